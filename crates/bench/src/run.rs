//! `portal-bench run`: load the population unless the database already holds it, measure the
//! ceiling, start the portal, and drive each scenario; then the table and the JSON.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use records_domain::{Db, Engine, PoolSettings};

use crate::drive::{drive, Measurement};
use crate::http::{client, Browser};
use crate::load::{self, redact};
use crate::population::Spec;
use crate::report::{Machine, Report, Row};
use crate::scenarios::{self, Fixture};
use crate::server::{portal_binary, Server};

pub struct RunOptions {
    pub database_url: String,
    pub spec: Spec,
    pub connections: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub scenarios: Vec<String>,
    pub portal: Option<PathBuf>,
    pub samples: PathBuf,
    pub json: Option<PathBuf>,
    pub log_dir: PathBuf,
}

pub async fn run(options: RunOptions) -> anyhow::Result<Report> {
    let url = &options.database_url;
    let engine = Engine::from_url(url)
        .context("--database-url: use sqlite://FILE or postgres://USER@HOST/DB")?;
    for s in &options.scenarios {
        anyhow::ensure!(
            scenarios::ALL.contains(&s.as_str()),
            "no scenario {s:?}; choose from {}",
            scenarios::ALL.join(", ")
        );
    }
    let portal = portal_binary(options.portal.clone()).await?;
    let present = load::patients_in(url).await?;
    let loaded = if present == 0 {
        eprintln!(
            "loading {} patients into {}",
            options.spec.patients,
            redact(url)
        );
        let report = load::load(url, &options.spec).await?;
        eprintln!("{report}");
        Some(report)
    } else {
        anyhow::ensure!(
            u64::try_from(present).ok() == Some(options.spec.patients),
            "{} holds {present} patients, not {}: give --patients {present}, or a fresh database",
            redact(url),
            options.spec.patients
        );
        eprintln!("{} already holds {present} patients", redact(url));
        None
    };
    let tag = format!("portal-bench-{}", std::process::id());
    let mut report = Report {
        date: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        command: std::env::args()
            .map(|a| redact(&a))
            .collect::<Vec<_>>()
            .join(" "),
        machine: Machine::this(),
        engine: match engine {
            Engine::Sqlite => "SQLite".into(),
            Engine::Postgres => "PostgreSQL".into(),
        },
        database: redact(url),
        patients: options.spec.patients,
        load: loaded,
        connections: options.connections,
        warmup_seconds: options.warmup.as_secs_f64(),
        seconds: options.window.as_secs_f64(),
        portal_binary: portal.display().to_string(),
        rows: Vec::new(),
    };

    let ceiling_log = options.log_dir.join(format!("{tag}-ceiling.log"));
    let ceiling = Server::ceiling(&ceiling_log).await?;
    let workers = (0..options.connections.max(1))
        .map(|_| {
            let browser = Browser {
                client: client(false, Default::default())?,
                base: ceiling.base.clone(),
                csrf: String::new(),
            };
            Ok((0, scenarios::Worker::get(browser, "/")))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let measured = drive(workers, options.warmup, options.window).await?;
    ceiling.stop().await;
    let ceiling_rate = measured.first().map_or(0.0, Measurement::per_second);
    if let Some(m) = measured.first() {
        report.rows.push(Row::new(
            "ceiling",
            "ceiling: bare axum, fixed 2 KB page",
            m,
        ));
    }

    let portal_log = options.log_dir.join(format!("{tag}-portal.log"));
    eprintln!("portal log: {}", portal_log.display());
    let mut server = Server::portal(&portal, url, &portal_log).await?;
    let db = Db::connect(
        url,
        &PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(60),
        },
    )
    .await?;
    backlog_published(&db).await?;
    let mut fixture = Fixture::load(db.clone(), &server.base).await?;
    for scenario in &options.scenarios {
        let title = scenarios::title(scenario);
        eprintln!("{title}: signing in {} connections", options.connections);
        let workers = match fixture
            .workers(scenario, options.connections, &options.samples)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                report.rows.push(Row::failed(
                    scenario,
                    title,
                    options.connections,
                    format!("setup: {e:#}"),
                ));
                continue;
            }
        };
        if scenario == "login" {
            let pages: Vec<_> = workers.iter().filter(|(g, _)| *g == 0).cloned().collect();
            server.reset_peak();
            let alone = drive(pages, options.warmup, options.window).await?;
            push(
                &mut report,
                &server,
                scenario,
                "login under load: page views alone",
                alone.first(),
                ceiling_rate,
            );
        }
        let peak_reset = server.reset_peak();
        eprintln!(
            "{title}: {} s warm-up, {} s measured",
            options.warmup.as_secs_f64(),
            options.window.as_secs_f64()
        );
        let measured = drive(workers, options.warmup, options.window).await?;
        if !peak_reset {
            eprintln!("(the portal's peak memory cannot be reset; peaks run from its start)");
        }
        if scenario == "login" {
            push(
                &mut report,
                &server,
                scenario,
                "login under load: page views during sign-ins",
                measured.first(),
                ceiling_rate,
            );
            push(
                &mut report,
                &server,
                scenario,
                "login under load: sign-ins (argon2)",
                measured.get(1),
                ceiling_rate,
            );
        } else {
            push(
                &mut report,
                &server,
                scenario,
                title,
                measured.first(),
                ceiling_rate,
            );
            if scenario == "fhir-import" {
                if let (Some(row), Some(m)) = (report.rows.last_mut(), measured.first()) {
                    row.resources_per_second = Some(m.units_per_second());
                }
            }
        }
        anyhow::ensure!(
            server.is_running(),
            "the portal stopped during {scenario} (see {})",
            portal_log.display()
        );
    }
    db.close().await;
    server.stop().await;
    print!("{}", report.table());
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report)
}

fn push(
    report: &mut Report,
    server: &Server,
    scenario: &str,
    title: &str,
    measured: Option<&Measurement>,
    ceiling_rate: f64,
) {
    let Some(m) = measured else {
        report
            .rows
            .push(Row::failed(scenario, title, 0, "no connections".into()));
        return;
    };
    let mut row = Row::new(scenario, title, m);
    if ceiling_rate > 0.0 {
        row.ratio_to_ceiling = Some(row.requests_per_second / ceiling_rate);
    }
    row.server_peak_rss_mib = server.peak_rss().map(|b| b as f64 / (1024.0 * 1024.0));
    report.rows.push(row);
}

/// Wait until the portal's publisher has taken the loaded history into the transparency log.
/// It works a backlog off at half the write lock's time (10 M loaded events take most of an
/// hour), and runs measured meanwhile would measure that, not the portal in steady state.
async fn backlog_published(db: &Db) -> anyhow::Result<()> {
    loop {
        let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log_queue")
            .fetch_one(db.pool())
            .await?;
        if queued == 0 {
            return Ok(());
        }
        eprintln!("transparency log: {queued} loaded events still to be published; waiting");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
