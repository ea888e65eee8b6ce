use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use portal_bench::population::Spec;
use portal_bench::run::RunOptions;
use portal_bench::{ceiling, load, run, scenarios};

#[derive(Parser)]
#[command(
    name = "portal-bench",
    version,
    about = "Benchmark harness of the patient-record portal"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate an empty database and load a synthetic population into it.
    Load {
        /// sqlite://FILE or postgres://USER@HOST/DB (an empty database).
        #[arg(long)]
        database_url: String,
        #[command(flatten)]
        population: Population,
    },
    /// Load the population if the database is empty, start the portal, and measure it.
    Run {
        /// sqlite://FILE or postgres://USER@HOST/DB (empty, or loaded with the same --patients).
        #[arg(long)]
        database_url: String,
        #[command(flatten)]
        population: Population,
        /// Concurrent connections per scenario (and for the ceiling).
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds measured per scenario.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seconds of warm-up before each measurement (not counted).
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Comma-separated scenarios (default: all): overview, record, lookup-cpr,
        /// lookup-name, audit-filter, fhir-search, fhir-import, login.
        #[arg(long, value_delimiter = ',')]
        scenarios: Vec<String>,
        /// The portal binary (default: `portal` beside this binary, built if missing).
        #[arg(long)]
        portal: Option<PathBuf>,
        /// Folder of FHIR transaction Bundles for the import scenario.
        #[arg(long, default_value = "samples/fhir")]
        samples: PathBuf,
        /// Write the results as JSON to this file too.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where the servers' logs go.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        log_dir: PathBuf,
    },
    /// Serve the ceiling: a bare axum handler returning a fixed 2 KB page.
    Ceiling {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
    },
}

/// The population's shape (see `portal_bench::population::Spec`).
#[derive(Args)]
struct Population {
    /// Patients to load, each with ~30 lab results, 5 prescriptions and a treatment plan.
    #[arg(long, default_value_t = 10_000)]
    patients: u64,
    /// Patients listed with each GP clinic.
    #[arg(long, default_value_t = 1_500)]
    patients_per_clinic: u64,
    /// Clinicians at least (two per clinic at least); each connection signs in as its own.
    #[arg(long, default_value_t = 256)]
    clinicians: u64,
    #[arg(long, default_value_t = 64)]
    auditors: u64,
    /// Patients with a portal account.
    #[arg(long, default_value_t = 5_000)]
    patient_users: u64,
    /// Audit events in each patient's chain.
    #[arg(long, default_value_t = 3)]
    audit_events_per_patient: u64,
}

impl Population {
    fn spec(&self) -> Spec {
        Spec {
            patients: self.patients,
            patients_per_clinic: self.patients_per_clinic.max(1),
            min_clinicians: self.clinicians.max(1),
            auditors: self.auditors.max(1),
            patient_users: self.patient_users.max(1),
            audit_events_per_patient: self.audit_events_per_patient,
            ..Spec::default()
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Load {
            database_url,
            population,
        } => load::load(&database_url, &population.spec())
            .await
            .map(|report| {
                println!("{report}");
                true
            }),
        Command::Run {
            database_url,
            population,
            connections,
            seconds,
            warmup,
            scenarios: chosen,
            portal,
            samples,
            json,
            log_dir,
        } => {
            let options = RunOptions {
                database_url,
                spec: population.spec(),
                connections: connections.max(1),
                warmup: Duration::from_secs_f64(warmup.max(0.0)),
                window: Duration::from_secs_f64(seconds.max(0.1)),
                scenarios: if chosen.is_empty() {
                    scenarios::ALL.iter().map(|s| s.to_string()).collect()
                } else {
                    chosen
                },
                portal,
                samples,
                json,
                log_dir,
            };
            run::run(options).await.map(|report| {
                if report.is_bad() {
                    eprintln!("FAILED: a scenario had errors or answered nothing");
                }
                !report.is_bad()
            })
        }
        Command::Ceiling { bind } => ceiling::serve(&bind).await.map(|()| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(2)
        }
    }
}
