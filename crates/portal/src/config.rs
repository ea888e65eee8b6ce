//! Configuration: every setting is an environment variable with a matching `serve` flag.
//! Values are checked here, once, so that a bad one stops the start with one line naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use access_control::PolicySettings;
use clap::Args;
use records_domain::store::Category;
use records_domain::Engine;
use time::Duration;
use transparency_log::{KeyType, SignerKey, VerifierKey};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "PORTAL_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Secure + __Host- session cookies: "true", "false", or "auto" (on unless bound to loopback).
    #[arg(long, env = "PORTAL_SECURE_COOKIES", default_value = "auto")]
    pub secure_cookies: String,
    /// Create the demo population and logins on first start: "true", "false", or "auto"
    /// (on only for SQLite served on a loopback address).
    #[arg(long, env = "PORTAL_DEMO", default_value = "auto")]
    pub demo: String,
    /// Minutes an emergency override lasts.
    #[arg(long, env = "PORTAL_OVERRIDE_MINUTES", default_value = "120")]
    pub override_minutes: String,
    /// What guardians of children under 15 see (comma-separated: lab_results, prescriptions,
    /// treatment_plans, diagnoses, allergies, vaccinations, access_log).
    #[arg(
        long,
        env = "PORTAL_GUARDIAN_CATEGORIES",
        default_value = "prescriptions,treatment_plans,vaccinations,access_log"
    )]
    pub guardian_categories: String,
    /// Years the audit log is kept (never less than 10: the log must outlive what patients are shown).
    #[arg(long, env = "PORTAL_AUDIT_RETENTION_YEARS", default_value = "10")]
    pub audit_retention_years: String,
    /// How many reverse proxies of yours stand in front of the portal, each appending to
    /// X-Forwarded-For: the client address is that many entries from the right. "false" = 0
    /// (ignore the header), "true" = 1.
    #[arg(long, env = "PORTAL_TRUST_PROXY", default_value = "false")]
    pub trust_proxy: String,
    /// Seconds a stopping portal (SIGTERM or SIGINT) gives in-flight requests and the audit
    /// writer before it exits anyway.
    #[arg(long, env = "PORTAL_SHUTDOWN_TIMEOUT", default_value = "20")]
    pub shutdown_timeout: String,
    /// The portal's address as clients reach it (e.g. https://portal.example.dk), used for the
    /// absolute URLs FHIR answers carry; unset = the scheme and Host header of each request.
    #[arg(long, env = "PORTAL_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Address for Prometheus' `/metrics`, apart from the public listener; unset = no metrics.
    #[arg(long, env = "PORTAL_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
    /// Seconds between the transparency log's rounds: queued audit events join the tree and
    /// a checkpoint of the new size is signed.
    #[arg(long, env = "PORTAL_CHECKPOINT_INTERVAL", default_value = "2")]
    pub checkpoint_interval: String,
    /// Witnesses whose cosignatures the portal keeps and shows: their verifier keys
    /// (`name+id+key`), comma-separated.
    #[arg(long, env = "PORTAL_WITNESS_KEYS", default_value = "")]
    pub witness_keys: String,
}

/// The transparency log's signing key, which lives outside the database: whoever can change
/// the database must not be able to sign a history of their own.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// File holding the log's Ed25519 signing key (C2SP note key), made at first start when
    /// missing. Default: beside a SQLite database file. With PostgreSQL it must be set, to the
    /// same key for every instance (e.g. a mounted secret).
    #[arg(long, env = "PORTAL_LOG_KEY_FILE")]
    pub log_key_file: Option<PathBuf>,
    /// The log's name, the origin line of its checkpoints; used when a key is made.
    #[arg(
        long,
        env = "PORTAL_LOG_NAME",
        default_value = "portal.localhost/audit"
    )]
    pub log_name: String,
    /// Verifier keys of retired signing keys (comma-separated): their checkpoints still verify.
    #[arg(long, env = "PORTAL_LOG_RETIRED_KEYS", default_value = "")]
    pub log_retired_keys: String,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// sqlite://FILE or postgres://USER@HOST/DB
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://portal.db")]
    pub database_url: String,
    /// Optional read replica (PostgreSQL streaming standby) for the auditor's searches.
    #[arg(long, env = "DATABASE_READ_URL")]
    pub database_read_url: Option<String>,
    /// Largest number of database connections in the pool.
    #[arg(long, env = "PORTAL_DB_MAX_CONNECTIONS", default_value = "16")]
    pub db_max_connections: String,
    /// Seconds a request waits for a free database connection before it is answered 503.
    #[arg(long, env = "PORTAL_DB_ACQUIRE_TIMEOUT", default_value = "3")]
    pub db_acquire_timeout: String,
}

#[derive(Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: String,
    pub database_read_url: Option<String>,
    pub db_max_connections: u32,
    pub db_acquire_timeout: std::time::Duration,
    pub secure_cookies: bool,
    pub demo: bool,
    pub override_window: Duration,
    pub policy: PolicySettings,
    pub audit_retention_years: u32,
    /// Reverse proxies in front of the portal whose X-Forwarded-For entries are believed.
    pub trusted_proxies: usize,
    /// Scheme, host and port clients reach the portal at, without a trailing slash.
    pub public_url: Option<String>,
    pub operations: Operations,
    pub log: LogSettings,
}

/// The transparency log: its key, the keys it trusts, and how often it publishes.
#[derive(Clone)]
pub struct LogSettings {
    pub signer: Arc<SignerKey>,
    pub retired: Vec<VerifierKey>,
    pub witnesses: Vec<VerifierKey>,
    pub checkpoint_interval: std::time::Duration,
}

impl LogSettings {
    /// Settings for a key of the caller's: tests and tools that need no file.
    pub fn with_key(signer: Arc<SignerKey>) -> Self {
        Self {
            signer,
            retired: Vec::new(),
            witnesses: Vec::new(),
            checkpoint_interval: std::time::Duration::from_secs(2),
        }
    }

    pub fn verifier(&self) -> VerifierKey {
        self.signer.verifier()
    }

    /// The keys a proof download names.
    pub fn keys(&self) -> access_control::audit::log::DownloadKeys<'_> {
        access_control::audit::log::DownloadKeys {
            log: self.verifier(),
            witnesses: &self.witnesses,
        }
    }

    /// Every key a checkpoint of this log may be signed with.
    pub fn trusted(&self) -> Vec<VerifierKey> {
        std::iter::once(self.verifier())
            .chain(self.retired.iter().cloned())
            .collect()
    }
}

/// How the process is run rather than what it serves.
#[derive(Debug, Clone)]
pub struct Operations {
    /// From the stop signal to exit, whatever is still running.
    pub shutdown_timeout: std::time::Duration,
    /// Where `/metrics` is served; never on the public listener.
    pub metrics_bind: Option<SocketAddr>,
}

impl Default for Operations {
    fn default() -> Self {
        Self {
            shutdown_timeout: std::time::Duration::from_secs(20),
            metrics_bind: None,
        }
    }
}

impl std::fmt::Debug for Config {
    // Database URLs may carry passwords; they never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("database", &redact(&self.database_url))
            .field("secure_cookies", &self.secure_cookies)
            .field("demo", &self.demo)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A configuration error: one line that names the setting.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn bad(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

fn flag(setting: &'static str, value: &str) -> Result<Option<bool>, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        "auto" => Ok(None),
        other => Err(bad(
            setting,
            format!("{other:?} is not true, false or auto"),
        )),
    }
}

/// `PORTAL_PUBLIC_URL`: an absolute http(s) origin; a path would be silently dropped, so it is
/// refused.
fn public_url(value: &str) -> Result<String, ConfigError> {
    const SETTING: &str = "PORTAL_PUBLIC_URL (--public-url)";
    let trimmed = value.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .ok_or_else(|| bad(SETTING, "give an http:// or https:// address"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(bad(
            SETTING,
            "give scheme, host and port only, e.g. https://portal.example.dk",
        ));
    }
    Ok(trimmed.to_string())
}

/// `PORTAL_TRUST_PROXY`: a number of proxies, or the flag it used to be (false = 0, true = 1).
fn trusted_proxies(value: &str) -> Result<usize, ConfigError> {
    const SETTING: &str = "PORTAL_TRUST_PROXY (--trust-proxy)";
    if let Ok(n) = value.trim().parse::<usize>() {
        return match n {
            0..=10 => Ok(n),
            _ => Err(bad(SETTING, "at most 10 proxies")),
        };
    }
    match flag(SETTING, value) {
        Ok(Some(on)) => Ok(usize::from(on)),
        _ => Err(bad(
            SETTING,
            format!("{value:?} is not a number of proxies (0 to 10), true or false"),
        )),
    }
}

impl DatabaseArgs {
    pub fn engine(&self) -> Result<Engine, ConfigError> {
        Engine::from_url(&self.database_url).ok_or_else(|| {
            bad(
                "DATABASE_URL (--database-url)",
                "use sqlite://FILE or postgres://USER@HOST/DB",
            )
        })
    }

    pub fn acquire_timeout(&self) -> Result<std::time::Duration, ConfigError> {
        match self.db_acquire_timeout.trim().parse::<u64>() {
            Ok(n) if (1..=60).contains(&n) => Ok(std::time::Duration::from_secs(n)),
            _ => Err(bad(
                "PORTAL_DB_ACQUIRE_TIMEOUT (--db-acquire-timeout)",
                "a whole number of seconds from 1 to 60",
            )),
        }
    }

    pub fn pool_settings(&self) -> Result<records_domain::PoolSettings, ConfigError> {
        Ok(records_domain::PoolSettings {
            max_connections: self.max_connections()?,
            acquire_timeout: self.acquire_timeout()?,
        })
    }

    pub fn max_connections(&self) -> Result<u32, ConfigError> {
        match self.db_max_connections.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(bad(
                "PORTAL_DB_MAX_CONNECTIONS (--db-max-connections)",
                "a whole number from 1 to 1000",
            )),
        }
    }
}

fn address(setting: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        bad(
            setting,
            format!("{value:?} is not an address like 127.0.0.1:8080"),
        )
    })
}

/// Comma-separated verifier keys of one type.
fn verifier_keys(
    setting: &'static str,
    value: &str,
    key_type: KeyType,
) -> Result<Vec<VerifierKey>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| match VerifierKey::parse(k) {
            Ok(key) if key.key_type() == key_type => Ok(key),
            Ok(_) => Err(bad(setting, format!("{k:?} is a key of another kind"))),
            Err(e) => Err(bad(setting, format!("{k:?}: {e}"))),
        })
        .collect()
}

const LOG_KEY_SETTING: &str = "PORTAL_LOG_KEY_FILE (--log-key-file)";

impl LogArgs {
    /// Where the signing key is: as configured, or beside a SQLite database file.
    pub fn key_path(&self, database_url: &str) -> Result<PathBuf, ConfigError> {
        if let Some(path) = &self.log_key_file {
            return Ok(path.clone());
        }
        let file = database_url
            .strip_prefix("sqlite://")
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|file| !file.is_empty() && !file.starts_with(':'))
            .ok_or_else(|| {
                bad(
                    LOG_KEY_SETTING,
                    "needed with PostgreSQL: the same signing key for every instance",
                )
            })?;
        Ok(PathBuf::from(format!("{file}.log-key")))
    }

    /// The signing key from its file, made there first if there is none.
    pub fn signer(&self, database_url: &str) -> Result<SignerKey, ConfigError> {
        load_or_make_key(
            &self.key_path(database_url)?,
            &self.log_name,
            KeyType::Ed25519,
        )
        .map_err(|problem| bad(LOG_KEY_SETTING, problem))
    }

    /// The public keys a checkpoint of this log may be signed with, for checking without
    /// signing: the key file's (which must exist) and the retired ones.
    pub fn trusted(&self, database_url: &str) -> Result<Vec<VerifierKey>, ConfigError> {
        let path = self.key_path(database_url)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(LOG_KEY_SETTING, format!("{}: {e}", path.display())))?;
        let current = SignerKey::parse(&text)
            .map_err(|e| bad(LOG_KEY_SETTING, format!("{}: {e}", path.display())))?
            .verifier();
        let mut keys = vec![current];
        keys.extend(verifier_keys(
            "PORTAL_LOG_RETIRED_KEYS (--log-retired-keys)",
            &self.log_retired_keys,
            KeyType::Ed25519,
        )?);
        Ok(keys)
    }
}

/// Read a C2SP signer key from `path`, or make one named `name` and write it there, readable
/// by its owner only. A key is never replaced: an unreadable file is an error, not a new key.
pub fn load_or_make_key(path: &Path, name: &str, key_type: KeyType) -> Result<SignerKey, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => SignerKey::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SignerKey::generate(name, key_type).map_err(|e| e.to_string())?;
            write_secret(path, &key.to_secret_text())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::info!(path = %path.display(), key = %key.verifier(), "made a new signing key");
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Create `path` with `text`, mode 0600, failing if it exists (two instances starting at once
/// must not each write a key over the other's).
fn write_secret(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

impl ServeArgs {
    fn operations(&self) -> Result<Operations, ConfigError> {
        let shutdown_timeout = match self.shutdown_timeout.trim().parse::<u64>() {
            Ok(s) if (1..=600).contains(&s) => std::time::Duration::from_secs(s),
            _ => {
                return Err(bad(
                    "PORTAL_SHUTDOWN_TIMEOUT (--shutdown-timeout)",
                    "a whole number of seconds from 1 to 600",
                ))
            }
        };
        let metrics_bind = self
            .metrics_bind
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| address("PORTAL_METRICS_BIND (--metrics-bind)", v))
            .transpose()?;
        Ok(Operations {
            shutdown_timeout,
            metrics_bind,
        })
    }

    pub fn into_config(self) -> Result<Config, ConfigError> {
        let bind = address("PORTAL_BIND (--bind)", &self.bind)?;
        let operations = self.operations()?;
        let engine = self.database.engine()?;
        if let Some(read) = &self.database.database_read_url {
            if Engine::from_url(read) != Some(Engine::Postgres) || engine != Engine::Postgres {
                return Err(bad(
                    "DATABASE_READ_URL (--database-read-url)",
                    "a read replica needs PostgreSQL for both URLs",
                ));
            }
        }
        let secure_cookies = flag(
            "PORTAL_SECURE_COOKIES (--secure-cookies)",
            &self.secure_cookies,
        )?
        .unwrap_or(!bind.ip().is_loopback());
        // The demo logins are printed in the README: on any address others can reach they
        // would be live accounts (an administrator's among them), so `auto` seeds only a
        // local SQLite trial run.
        let demo = flag("PORTAL_DEMO (--demo)", &self.demo)?
            .unwrap_or(engine == Engine::Sqlite && bind.ip().is_loopback());
        let trusted_proxies = trusted_proxies(&self.trust_proxy)?;
        let public_url = self.public_url.as_deref().map(public_url).transpose()?;
        let override_minutes: i64 = match self.override_minutes.trim().parse() {
            Ok(m) if (5..=24 * 60).contains(&m) => m,
            _ => {
                return Err(bad(
                    "PORTAL_OVERRIDE_MINUTES (--override-minutes)",
                    "a whole number of minutes from 5 to 1440",
                ))
            }
        };
        let guardian_categories = self
            .guardian_categories
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Category::parse(s).ok_or_else(|| {
                    bad(
                        "PORTAL_GUARDIAN_CATEGORIES (--guardian-categories)",
                        format!(
                            "{s:?} is not one of {}",
                            Category::ALL.map(Category::as_str).join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let audit_retention_years = match self.audit_retention_years.trim().parse::<u32>() {
            Ok(y) if (10..=100).contains(&y) => y,
            _ => {
                return Err(bad(
                    "PORTAL_AUDIT_RETENTION_YEARS (--audit-retention-years)",
                    "a whole number of years from 10 to 100",
                ))
            }
        };
        let log = LogSettings {
            signer: Arc::new(self.log.signer(&self.database.database_url)?),
            retired: verifier_keys(
                "PORTAL_LOG_RETIRED_KEYS (--log-retired-keys)",
                &self.log.log_retired_keys,
                KeyType::Ed25519,
            )?,
            witnesses: verifier_keys(
                "PORTAL_WITNESS_KEYS (--witness-keys)",
                &self.witness_keys,
                KeyType::CosignatureV1,
            )?,
            checkpoint_interval: match self.checkpoint_interval.trim().parse::<u64>() {
                Ok(s) if (1..=3600).contains(&s) => std::time::Duration::from_secs(s),
                _ => {
                    return Err(bad(
                        "PORTAL_CHECKPOINT_INTERVAL (--checkpoint-interval)",
                        "a whole number of seconds from 1 to 3600",
                    ))
                }
            },
        };
        Ok(Config {
            log,
            bind,
            db_max_connections: self.database.max_connections()?,
            db_acquire_timeout: self.database.acquire_timeout()?,
            database_url: self.database.database_url,
            database_read_url: self.database.database_read_url,
            secure_cookies,
            demo,
            override_window: Duration::minutes(override_minutes),
            policy: PolicySettings {
                guardian_categories,
            },
            audit_retention_years,
            trusted_proxies,
            public_url,
            operations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        // The signing key is made in a folder of the test's, never beside the checkout.
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("log.key");
        let key = format!("--log-key-file={}", key.display());
        let mut argv = vec!["portal", key.as_str()];
        argv.extend_from_slice(args);
        Probe::parse_from(argv).serve.into_config()
    }

    #[test]
    fn defaults_run_locally() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
        assert!(!c.secure_cookies, "plain HTTP on loopback");
        assert!(c.demo);
        assert_eq!(c.override_window, Duration::hours(2));
        assert_eq!(c.operations.shutdown_timeout.as_secs(), 20);
        assert!(
            c.operations.metrics_bind.is_none(),
            "no metrics unless asked"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = parse(&["--bind", "nowhere"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("configuration: PORTAL_BIND (--bind):"),
            "{e}"
        );
        let e = parse(&["--database-url", "mysql://x"]).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"));
        let e = parse(&["--secure-cookies", "maybe"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_SECURE_COOKIES"));
        let e = parse(&["--guardian-categories", "x-rays"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_GUARDIAN_CATEGORIES"));
        let e = parse(&["--audit-retention-years", "2"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_AUDIT_RETENTION_YEARS"));
        let e = parse(&["--shutdown-timeout", "0"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_SHUTDOWN_TIMEOUT"));
        let e = parse(&["--metrics-bind", "everywhere"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_METRICS_BIND"));
        let e = parse(&["--witness-keys", "not a key"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_WITNESS_KEYS"));
        let e = parse(&["--checkpoint-interval", "0"]).unwrap_err();
        assert!(e.to_string().contains("PORTAL_CHECKPOINT_INTERVAL"));
    }

    #[test]
    fn the_log_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portal.db.log-key");
        let args = LogArgs {
            log_key_file: None,
            log_name: "portal.test/audit".into(),
            log_retired_keys: String::new(),
        };
        let url = format!("sqlite://{}", dir.path().join("portal.db").display());
        assert_eq!(args.key_path(&url).unwrap(), path, "beside the database");
        let made = args.signer(&url).unwrap();
        let again = args.signer(&url).unwrap();
        assert_eq!(made.verifier(), again.verifier());
        assert_eq!(args.trusted(&url).unwrap(), vec![made.verifier()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by its owner only");
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(args.signer(&url).is_err(), "a bad key file is not replaced");
        let e = args.key_path("postgres://u@h/db").unwrap_err();
        assert!(e.to_string().contains("PORTAL_LOG_KEY_FILE"));
    }

    #[test]
    fn postgres_never_seeds_unless_asked() {
        let c = parse(&["--database-url", "postgres://u:pw@h/db"]).unwrap();
        assert!(!c.demo);
        assert!(!format!("{c:?}").contains("pw"));
        let c = parse(&["--database-url", "postgres://u@h/db", "--demo", "true"]).unwrap();
        assert!(c.demo);
    }

    #[test]
    fn trust_proxy_counts_proxies_and_keeps_its_old_flags() {
        let proxies = |v: &str| parse(&[&format!("--trust-proxy={v}")]).map(|c| c.trusted_proxies);
        assert_eq!(parse(&[]).unwrap().trusted_proxies, 0);
        assert_eq!(proxies("false").unwrap(), 0);
        assert_eq!(proxies("true").unwrap(), 1);
        assert_eq!(proxies("0").unwrap(), 0);
        assert_eq!(proxies("1").unwrap(), 1);
        assert_eq!(proxies("2").unwrap(), 2);
        for bad in ["auto", "-1", "11", "many"] {
            let e = proxies(bad).unwrap_err();
            assert!(e.to_string().contains("PORTAL_TRUST_PROXY"), "{bad}: {e}");
        }
    }

    #[test]
    fn demo_data_is_seeded_by_default_only_on_a_loopback_bind() {
        assert!(parse(&["--bind", "127.0.0.1:8080"]).unwrap().demo);
        assert!(parse(&["--bind", "[::1]:8080"]).unwrap().demo);
        for public in ["0.0.0.0:8080", "[::]:8080", "192.0.2.10:8080"] {
            assert!(!parse(&["--bind", public]).unwrap().demo, "{public}");
            assert!(
                parse(&["--bind", public, "--demo", "true"]).unwrap().demo,
                "asked for explicitly: {public}"
            );
        }
        assert!(!parse(&["--demo", "false"]).unwrap().demo);
    }

    #[test]
    fn public_bind_turns_secure_cookies_on() {
        assert!(parse(&["--bind", "0.0.0.0:8443"]).unwrap().secure_cookies);
    }
}
