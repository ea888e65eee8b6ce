//! The `portal` command: `serve` (the default), `migrate`, `seed`, `user add`, `import`,
//! `token add`, `audit verify`, `audit verify-proof`, `audit log-key`, `audit prune` and
//! `witness`.

use std::process::ExitCode;

use access_control::accounts::{self, NewUser};
use access_control::audit::verify;
use access_control::Role;
use clap::{Parser, Subcommand};
use records_domain::{Cpr, Db};
use tracing_subscriber::EnvFilter;

use crate::app;
use crate::config::{DatabaseArgs, LogArgs, ServeArgs};
use crate::seed;
use crate::transparency::witness::{self, WitnessArgs};

#[derive(Parser)]
#[command(name = "portal", version, about = "National patient-record portal")]
struct Cli {
    /// Log filter (e.g. info, debug, portal=debug,tower_http=info).
    #[arg(long, env = "PORTAL_LOG", default_value = "info", global = true)]
    log: String,
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, env = "PORTAL_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web portal (the default).
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database schema.
    Migrate(DatabaseArgs),
    /// Create the demo population and logins (if the database has no users yet).
    Seed(DatabaseArgs),
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Import FHIR R4 Bundles (.json) and NDJSON files (.ndjson); re-importing changes nothing.
    Import {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Source system recorded on every row (re-imports from the same source update in place).
        #[arg(long, default_value = "urn:portal:import")]
        source: String,
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// API tokens for the FHIR interface.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Witness a portal's transparency log: check each new checkpoint against the last one
    /// cosigned, cosign it, keep a copy. Meant to be run by another organisation.
    Witness(WitnessArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; prints a one-time password (to be changed at first sign-in) and, for staff, the TOTP secret.
    Add {
        #[command(flatten)]
        database: DatabaseArgs,
        /// patient, clinician, auditor or administrator
        #[arg(long)]
        role: String,
        #[arg(long)]
        username: String,
        /// Full name as shown in the portal and the audit log.
        #[arg(long)]
        name: String,
        /// For patients: their CPR number.
        #[arg(long)]
        cpr: Option<String>,
        /// For clinicians: the clinic's id.
        #[arg(long)]
        clinic: Option<uuid::Uuid>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a bearer token; prints it once (only its hash is stored).
    Add {
        #[command(flatten)]
        database: DatabaseArgs,
        /// A name for the client (shown in the audit log).
        #[arg(long)]
        name: String,
        /// Space-separated SMART scopes, e.g. "patient/*.read" or "system/Observation.write".
        #[arg(long)]
        scopes: String,
        /// The portal user the token acts as (required for patient/ and user/ scopes).
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every hash chain and the transparency log against every signed checkpoint;
    /// exits non-zero and names what is missing or changed.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        log: LogArgs,
        /// A signed checkpoint kept outside the database (a witness's state file, a patient's
        /// download's checkpoint): the log must still hold the tree it signed. Repeatable.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<std::path::PathBuf>,
    },
    /// Check a patient's proof download (from "Who looked at my record") on its own: the
    /// checkpoint's signatures and each event's inclusion proof. Needs no database.
    VerifyProof {
        file: std::path::PathBuf,
        /// The log's verifier key as published; without it, the download's own key is used.
        #[arg(long)]
        log_key: Option<String>,
    },
    /// Print the transparency log's verifier key, to publish (made first if there is none).
    LogKey {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Delete audit events older than the retention period, keeping every chain verifiable.
    /// On PostgreSQL run it as the schema owner: the application role may not delete.
    Prune {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Years to keep (at least 10; the database refuses younger deletions anyway).
        #[arg(long, env = "PORTAL_AUDIT_RETENTION_YEARS", default_value_t = 10)]
        retention_years: i64,
    },
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_json);
    let result = match cli.command {
        None => serve(ServeArgs::parse_defaults()).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Migrate(db)) => open(&db).await.map(|_| println!("database is up to date")),
        Some(Command::Seed(db)) => seed_command(&db).await,
        Some(Command::User {
            command:
                UserCommand::Add {
                    database,
                    role,
                    username,
                    name,
                    cpr,
                    clinic,
                },
        }) => add_user(&database, &role, &username, &name, cpr.as_deref(), clinic).await,
        Some(Command::Audit {
            command:
                AuditCommand::Verify {
                    database,
                    log,
                    checkpoints,
                },
        }) => return audit_verify(&database, &log, &checkpoints).await,
        Some(Command::Audit {
            command: AuditCommand::VerifyProof { file, log_key },
        }) => return crate::transparency::commands::verify_proof(&file, log_key.as_deref()),
        Some(Command::Audit {
            command: AuditCommand::LogKey { database, log },
        }) => crate::transparency::commands::log_key(&database, &log),
        Some(Command::Witness(args)) => {
            return match witness::run(&args).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("{e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Audit {
            command:
                AuditCommand::Prune {
                    database,
                    retention_years,
                },
        }) => audit_prune(&database, retention_years).await,
        Some(Command::Import {
            database,
            source,
            files,
        }) => return import(&database, &source, &files).await,
        Some(Command::Token {
            command:
                TokenCommand::Add {
                    database,
                    name,
                    scopes,
                    user,
                },
        }) => add_token(&database, &name, &scopes, user.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}

impl ServeArgs {
    /// `portal` with no subcommand serves with the environment's settings.
    fn parse_defaults() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Defaults::parse_from(["portal"]).serve
    }
}

fn init_logging(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<Db> {
    args.engine()?;
    let db = Db::connect(&args.database_url, &args.pool_settings()?).await?;
    db.migrate().await?;
    Ok(db)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let demo = config.demo;
    let db = app::connect(&config).await?;
    if demo {
        let report = seed::seed(&db).await?;
        if report.created {
            println!("Created demo data: {} patients, {} lab results, {} prescriptions, {} treatment plans.", report.patients, report.lab_results, report.prescriptions, report.plans);
        }
        for login in seed::demo_logins() {
            println!("{login}");
        }
    }
    db.close().await;
    let (addr, server, _) = app::spawn(config).await?;
    println!("Portal listening on http://{addr}");
    server.await?;
    Ok(())
}

async fn seed_command(args: &DatabaseArgs) -> anyhow::Result<()> {
    let db = open(args).await?;
    let report = seed::seed(&db).await?;
    if report.created {
        println!(
            "Created demo data: {} patients, {} lab results, {} prescriptions, {} treatment plans.",
            report.patients, report.lab_results, report.prescriptions, report.plans
        );
    } else {
        println!("The database already has users; nothing seeded.");
    }
    for login in seed::demo_logins() {
        println!("{login}");
    }
    Ok(())
}

async fn add_user(
    args: &DatabaseArgs,
    role: &str,
    username: &str,
    name: &str,
    cpr: Option<&str>,
    clinic: Option<uuid::Uuid>,
) -> anyhow::Result<()> {
    let role = Role::parse(role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| {
            anyhow::anyhow!("--role: use patient, clinician, auditor or administrator")
        })?;
    let db = open(args).await?;
    let mut tx = db.begin_write().await?;
    let patient_id = match cpr {
        Some(c) => {
            let cpr = Cpr::parse(c).map_err(|e| anyhow::anyhow!("--cpr: {e}"))?;
            let p = records_domain::store::patients::by_cpr(&mut tx, &cpr)
                .await?
                .ok_or_else(|| anyhow::anyhow!("--cpr: no patient has that CPR number"))?;
            Some(p.id)
        }
        None => None,
    };
    let password = crate::auth::totp::recovery_codes().join("-");
    let totp_secret = role
        .requires_second_factor()
        .then(crate::auth::totp::new_secret);
    let hash = tokio::task::spawn_blocking({
        let p = password.clone();
        move || accounts::hash_password(&p)
    })
    .await??;
    let new = NewUser {
        username: username.into(),
        display_name: name.into(),
        role,
        patient_id,
        clinic_id: clinic,
        totp_secret: totp_secret.clone(),
        must_change_password: true,
    };
    accounts::create(&mut tx, &new, &hash).await?;
    tx.commit().await?;
    println!("user {username} created; one-time password: {password}");
    if let Some(secret) = totp_secret {
        println!("TOTP secret (add to the authenticator app): {secret}");
    }
    Ok(())
}

async fn audit_prune(args: &DatabaseArgs, retention_years: i64) -> anyhow::Result<()> {
    let db = open(args).await?;
    let operator = access_control::Actor::system(
        uuid::Uuid::nil(),
        "portal audit prune (operator)",
        access_control::Reach::WholeRole,
    );
    let ctx = access_control::RequestContext {
        client_addr: "command line".into(),
    };
    let mut tx = db.begin_write().await?;
    let report = access_control::audit::prune::prune(
        &mut tx,
        &operator,
        &ctx,
        retention_years,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    tx.commit().await?;
    println!(
        "audit log: {} events older than {retention_years} years removed from {} chains; every chain keeps its anchor",
        report.events, report.chains
    );
    Ok(())
}

async fn audit_verify(
    args: &DatabaseArgs,
    log: &LogArgs,
    checkpoints: &[std::path::PathBuf],
) -> ExitCode {
    let report = async {
        let trust = crate::transparency::commands::trust(args, log, checkpoints)?;
        let db = open(args).await?;
        let mut conn = db.pool().acquire().await?;
        Ok::<_, anyhow::Error>(verify::verify_all(&mut conn, &trust).await?)
    }
    .await;
    match report {
        Ok(report) => {
            println!(
                "audit log: {} chains, {} events checked",
                report.chains, report.events
            );
            println!(
                "transparency log: {} leaves, {} signed checkpoints checked",
                report.log.size, report.log.checkpoints
            );
            for problem in &report.log.problems {
                println!("BROKEN: {problem}");
            }
            for b in &report.broken {
                let patient = if b.chain_key == access_control::audit::SYSTEM_CHAIN {
                    "system chain".to_string()
                } else {
                    format!("patient {}", b.chain_key)
                };
                println!(
                    "BROKEN: {patient}, event #{} ({}): {}",
                    b.seq,
                    b.event_id.as_deref().unwrap_or("missing"),
                    b.problem
                );
            }
            if report.is_intact() {
                println!("all chains intact; the log holds every signed checkpoint's tree");
                ExitCode::SUCCESS
            } else {
                println!(
                    "{} broken chain(s), {} transparency log problem(s)",
                    report.broken.len(),
                    report.log.problems.len()
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}

async fn import(args: &DatabaseArgs, source: &str, files: &[std::path::PathBuf]) -> ExitCode {
    let db = match open(args).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let report = crate::import::import_files(&db, source, files, true).await;
    crate::import::print(&report);
    if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

async fn add_token(
    args: &DatabaseArgs,
    name: &str,
    scopes: &str,
    user: Option<&str>,
) -> anyhow::Result<()> {
    let db = open(args).await?;
    let mut tx = db.begin_write().await?;
    let user_id = match user {
        Some(username) => Some(
            accounts::by_username(&mut tx, username)
                .await?
                .ok_or_else(|| anyhow::anyhow!("--user: no user {username:?}"))?
                .id,
        ),
        None => None,
    };
    let secret = access_control::tokens::create(&mut tx, name, scopes, user_id).await?;
    tx.commit().await?;
    println!("token {name} created (shown once): {secret}");
    Ok(())
}
