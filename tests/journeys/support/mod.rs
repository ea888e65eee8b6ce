//! The test harness: the portal's router over a fresh database (a SQLite file in a temporary
//! folder, or a fresh PostgreSQL database when TEST_DATABASE_URL is set), called in-process by
//! a `Browser` per user with its own cookie jar that fills in CSRF tokens like a real form
//! would. `TestApp::served` puts the same portal on a real socket for tests that need one.
//!
//! Every journey test is written once and run on both engines with `both_engines!`. Without
//! TEST_DATABASE_URL the PostgreSQL variants are compiled as ignored tests (the portal's build
//! script decides), so the summary counts them as ignored, never as passed; under `CI` they
//! run and fail.

#![allow(dead_code)]

mod browser;
mod page;
pub mod process;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use portal::config::{Config, LogSettings};
use portal::seed::{demo_logins, DemoLogin};
use records_domain::{Db, Engine, PoolSettings};
use tokio::sync::{Mutex, OnceCell};
use transparency_log::{KeyType, SignerKey};

pub use browser::Browser;
pub use page::Page;

/// Run an async test body against SQLite and PostgreSQL (ignored without TEST_DATABASE_URL).
/// `both_engines!(name, with |config| ..., body)` changes the portal's configuration first.
macro_rules! both_engines {
    ($name:ident, with $setup:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app =
                    crate::support::TestApp::spawn_with(records_domain::Engine::Sqlite, $setup)
                        .await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(journeys_on_postgres),
                ignore = "TEST_DATABASE_URL is not set: the PostgreSQL variant did not run"
            )]
            async fn postgres() {
                let app =
                    crate::support::TestApp::spawn_with(records_domain::Engine::Postgres, $setup)
                        .await;
                ($body)(app).await;
            }
        }
    };
    ($name:ident, $body:expr) => {
        both_engines!($name, with | _ | {}, $body);
    };
}

/// Run an async test body that starts its own portal processes against a database URL: a
/// SQLite file in a temporary folder, and an empty PostgreSQL database (ignored without
/// TEST_DATABASE_URL, as in `both_engines!`).
macro_rules! both_databases {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                ($body)(crate::support::process::sqlite_in(&dir)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(journeys_on_postgres),
                ignore = "TEST_DATABASE_URL is not set: the PostgreSQL variant did not run"
            )]
            async fn postgres() {
                ($body)(crate::support::process::fresh_postgres(stringify!($name)).await).await;
            }
        }
    };
}

pub struct TestApp {
    /// The origin of the in-process portal's pages, unique per portal.
    pub base: String,
    pub db: Db,
    pub engine: Engine,
    pub database_url: String,
    portal: Router,
    served: OnceCell<String>,
    _dir: Option<tempfile::TempDir>,
}

static SQLITE_TEMPLATE: OnceCell<(tempfile::TempDir, std::path::PathBuf)> = OnceCell::const_new();
static PG_TEMPLATE: OnceCell<String> = OnceCell::const_new();
static PG_CLONE_LOCK: Mutex<()> = Mutex::const_new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn config(database_url: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.into(),
        database_read_url: None,
        db_max_connections: 8,
        db_acquire_timeout: std::time::Duration::from_secs(60),
        secure_cookies: false,
        demo: true,
        override_window: time::Duration::hours(2),
        policy: Default::default(),
        audit_retention_years: 10,
        trusted_proxies: 0,
        public_url: None,
        operations: Default::default(),
        log: LogSettings::with_key(LOG_KEY.clone()),
    }
}

/// The transparency log's signing key of every portal of this test binary.
pub static LOG_KEY: std::sync::LazyLock<std::sync::Arc<SignerKey>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(
            SignerKey::generate("portal.test/audit", KeyType::Ed25519).expect("a log key"),
        )
    });

/// What `audit verify` trusts in these tests: the test binary's log key.
pub fn log_trust() -> access_control::audit::verify::LogTrust {
    access_control::audit::verify::LogTrust {
        keys: vec![LOG_KEY.verifier()],
        outside: Vec::new(),
    }
}

async fn seeded(url: &str) {
    let db = Db::connect(url, &PoolSettings::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    portal::seed::seed(&db).await.expect("seed");
    db.close().await;
}

/// A change to the test portal's configuration.
pub type Setup = fn(&mut Config);

impl TestApp {
    pub async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, |_| {}).await
    }

    pub async fn spawn_with(engine: Engine, setup: Setup) -> Self {
        match engine {
            Engine::Sqlite => Self::spawn_sqlite(setup).await,
            Engine::Postgres => Self::spawn_postgres_as_with(None, setup).await,
        }
    }

    async fn spawn_sqlite(setup: Setup) -> Self {
        // The demo population is seeded once per test binary and copied for each test.
        let (_, template) = SQLITE_TEMPLATE
            .get_or_init(|| async {
                let dir = tempfile::tempdir().expect("tempdir");
                let seeded_path = dir.path().join("seeded.db");
                let url = format!("sqlite://{}", seeded_path.display());
                seeded(&url).await;
                // A self-contained copy with no WAL file beside it, safe to copy byte for byte.
                let path = dir.path().join("template.db");
                let db = Db::connect(&url, &PoolSettings::default())
                    .await
                    .expect("connect");
                sqlx::query(&format!("VACUUM INTO '{}'", path.display()))
                    .execute(db.pool())
                    .await
                    .expect("vacuum into template");
                db.close().await;
                (dir, path)
            })
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portal.db");
        std::fs::copy(template, &path).expect("copy template");
        let url = format!("sqlite://{}", path.display());
        Self::start(url, Engine::Sqlite, Some(dir), setup).await
    }

    /// A fresh PostgreSQL database served by the portal logged in as `login_role` (created as
    /// a member of the application role `portal_app` if missing) instead of the owner.
    pub async fn spawn_postgres_as(login_role: Option<&str>) -> Self {
        Self::spawn_postgres_as_with(login_role, |_| {}).await
    }

    async fn spawn_postgres_as_with(login_role: Option<&str>, setup: Setup) -> Self {
        let admin_url = postgres_admin_url();
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("TEST_DATABASE_URL needs a database");
        let run = format!(
            "{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 100_000_000
        );
        let template = PG_TEMPLATE
            .get_or_init(|| async {
                let name = format!("portal_test_tmpl_{run}");
                admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
                seeded(&format!("{base}/{name}")).await;
                name
            })
            .await;
        let name = format!(
            "portal_test_{run}_{}",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        {
            // PostgreSQL copies a template only while nobody else is using it.
            let _guard = PG_CLONE_LOCK.lock().await;
            admin(
                &admin_url,
                &format!("CREATE DATABASE {name} TEMPLATE {template}"),
            )
            .await;
        }
        let served_by = match login_role {
            None => base.clone(),
            Some(role) => {
                admin(
                    &admin_url,
                    &format!(
                        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \
                         THEN CREATE ROLE {role} LOGIN IN ROLE portal_app; END IF; END$$"
                    ),
                )
                .await;
                let (scheme_user, host) = base
                    .split_once('@')
                    .expect("user@host in TEST_DATABASE_URL");
                let scheme = scheme_user.split_once("//").map_or("postgres:", |(s, _)| s);
                format!("{scheme}//{role}@{host}")
            }
        };
        Self::start(format!("{served_by}/{name}"), Engine::Postgres, None, setup).await
    }

    async fn start(
        url: String,
        engine: Engine,
        dir: Option<tempfile::TempDir>,
        setup: Setup,
    ) -> Self {
        let mut config = config(&url);
        setup(&mut config);
        let (portal, db) = portal::app::build(config).await.expect("portal starts");
        Self {
            base: format!(
                "http://portal-{}.test",
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ),
            db,
            engine,
            database_url: url,
            portal,
            served: OnceCell::new(),
            _dir: dir,
        }
    }

    /// The same portal on a real loopback socket (started on first call), for a client that
    /// is not a `Browser`: an HTTP library, another task's raw requests.
    pub async fn served(&self) -> &str {
        self.served
            .get_or_init(|| async {
                let any_port = "127.0.0.1:0".parse().expect("an address");
                let (addr, _server) = portal::app::serve(any_port, self.portal.clone())
                    .await
                    .expect("portal serves");
                format!("http://{addr}")
            })
            .await
    }

    pub fn browser(&self) -> Browser {
        Browser::new(self.portal.clone(), self.base.clone())
    }

    /// A browser that shows redirects instead of following them.
    pub fn browser_without_redirects(&self) -> Browser {
        self.browser().without_redirects()
    }

    /// A client that sends `Authorization: Bearer <token>` on every request (an API client).
    pub fn browser_with_bearer(&self, token: &str) -> Browser {
        self.browser_without_redirects()
            .with_header("authorization", &format!("Bearer {token}"))
    }

    /// A browser whose requests reach the portal through a reverse proxy that saw them come
    /// from `forwarded_for` (an `X-Forwarded-For` header on every request; the portal believes
    /// it when configured with `trusted_proxies`).
    pub fn browser_forwarded_for(&self, forwarded_for: &str) -> Browser {
        self.browser().with_header("x-forwarded-for", forwarded_for)
    }

    /// The number of stored sessions.
    pub async fn sessions(&self) -> i64 {
        self.count(match self.engine {
            Engine::Sqlite => "SELECT COUNT(*) FROM tower_sessions",
            Engine::Postgres => "SELECT COUNT(*) FROM tower_sessions.session",
        })
        .await
    }

    /// Signed in like `signed_in`, but showing redirects instead of following them.
    pub async fn browser_signed_in_without_redirects(&self, username: &str) -> Browser {
        self.signed_in(username).await.without_redirects()
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> String {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<String, _>(0)
    }

    /// The first column of the first row of `sql`, as a number (e.g. a COUNT).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<i64, _>(0)
    }

    /// `audit verify` of this portal's database: the chains and the transparency log.
    pub async fn verify_audit_log(&self) -> access_control::audit::verify::VerifyReport {
        let mut conn = self.db.pool().acquire().await.unwrap();
        access_control::audit::verify::verify_all(&mut conn, &log_trust())
            .await
            .unwrap()
    }

    /// Every chain intact and the log holding every signed checkpoint's tree.
    pub async fn assert_audit_log_intact(&self) {
        let report = self.verify_audit_log().await;
        assert!(
            report.is_intact(),
            "{:?} {:?}",
            report.broken,
            report.log.problems
        );
    }

    /// A browser already signed in as the demo user `username` (second factor included).
    pub async fn signed_in(&self, username: &str) -> Browser {
        let mut b = self.browser();
        let page = b.login(username).await;
        assert_eq!(
            page.status, 200,
            "login of {username} failed: {}",
            page.body
        );
        b
    }
}

/// The PostgreSQL server the variants run on. A variant runs without it only when asked to
/// (`--include-ignored`) or under CI, and then fails: it must not pass without having run.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: the PostgreSQL variant cannot run")
}

async fn admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::Executor::execute(&mut conn, sql).await.expect(sql);
}

/// The TOTP time step last used per (portal, user): the portal takes each step once.
static TOTP_STEPS: std::sync::Mutex<BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A code the portal at `base` has not seen yet for `username`: the current step's, or the
/// next step's (the portal allows one step of clock drift), or after waiting for a new step.
pub async fn fresh_totp(base: &str, username: &str, secret: &str) -> String {
    let key = (base.to_string(), username.to_string());
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let current = now.as_secs() / 30;
        let chosen = {
            let mut steps = TOTP_STEPS.lock().unwrap();
            let step = steps
                .get(&key)
                .map_or(current, |last| current.max(last + 1));
            (step <= current + 1).then(|| {
                steps.insert(key.clone(), step);
                step
            })
        };
        match chosen {
            Some(step) => {
                return portal::auth::totp::code_of_step(secret, username, step).expect("totp")
            }
            None => {
                let into_step = now.as_millis() % 30_000;
                tokio::time::sleep(Duration::from_millis((30_000 - into_step) as u64 + 50)).await
            }
        }
    }
}

pub fn demo(username: &str) -> DemoLogin {
    demo_logins()
        .into_iter()
        .find(|l| l.username == username)
        .expect("demo user")
}
