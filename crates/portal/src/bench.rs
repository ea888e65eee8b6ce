//! `portal bench`: the figures in the README, measured on a fresh database with the demo
//! population. It starts a real portal on a free port and drives it over HTTP:
//! audited page reads (sign-in once per client, then the overview again and again), FHIR
//! searches with a token, the Synthea import, raw audit appends, a deep keyset page of the
//! audit log, and `audit verify` over everything that was written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use access_control::audit::{self, query, NewEvent, Outcome};
use access_control::{accounts, tokens, RequestContext};
use records_domain::model::PatientId;
use tokio::sync::Mutex;

use crate::config::Config;

pub struct BenchOptions {
    pub database_url: String,
    pub seconds: u64,
    pub clients: usize,
    pub audit_events: u64,
    pub samples: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, latencies: &mut [Duration], errors: u64, elapsed: f64) {
    latencies.sort();
    println!(
        "{name:<34} {:>8.0} req/s   p50 {:>6.1} ms   p95 {:>6.1} ms   p99 {:>6.1} ms   ({} requests, {errors} errors)",
        latencies.len() as f64 / elapsed,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        percentile(latencies, 0.99),
        latencies.len()
    );
}

fn csrf_of(body: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    body.find(marker)
        .map(|i| &body[i + marker.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

async fn signed_in_client(base: &str) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder().cookie_store(true).build()?;
    let login = client
        .get(format!("{base}/login"))
        .send()
        .await?
        .text()
        .await?;
    let form = [
        ("csrf", csrf_of(&login)),
        ("username", "anne".into()),
        ("password", "anne-demo-2026".into()),
    ];
    let page = client
        .post(format!("{base}/login"))
        .form(&form)
        .send()
        .await?;
    anyhow::ensure!(
        page.status().is_success(),
        "bench sign-in failed: {}",
        page.status()
    );
    Ok(client)
}

/// `clients` tasks request `path` for `seconds`; returns latencies and errors.
async fn drive(
    clients: Vec<reqwest::Client>,
    url: String,
    bearer: Option<String>,
    seconds: u64,
) -> (Vec<Duration>, u64, f64) {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (url, bearer, latencies, errors) = (
                url.clone(),
                bearer.clone(),
                latencies.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut failed = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let mut request = client.get(&url);
                    if let Some(b) = &bearer {
                        request = request.bearer_auth(b);
                    }
                    match request.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            mine.push(t.elapsed());
                        }
                        _ => failed += 1,
                    }
                }
                latencies.lock().await.extend(mine);
                *errors.lock().await += failed;
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let latencies = std::mem::take(&mut *latencies.lock().await);
    let errors = *errors.lock().await;
    (latencies, errors, elapsed)
}

pub async fn run(options: BenchOptions, base_config: Config) -> anyhow::Result<()> {
    let mut config = base_config;
    config.database_url = options.database_url.clone();
    config.bind = "127.0.0.1:0".parse()?;
    config.demo = true;
    config.secure_cookies = false;
    let seed_db = crate::app::connect(&config).await?;
    crate::seed::seed(&seed_db).await?;
    seed_db.close().await;
    let (addr, _server, db) = crate::app::spawn(config).await?;
    let base = format!("http://{addr}");
    println!(
        "portal bench on {} ({} clients, {} s per load test, {} CPU cores)",
        crate::config::redact(&options.database_url),
        options.clients,
        options.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    let mut clients = Vec::new();
    for _ in 0..options.clients {
        clients.push(signed_in_client(&base).await?);
    }
    let (mut lat, errors, elapsed) =
        drive(clients, format!("{base}/me"), None, options.seconds).await;
    report("overview page (audited read)", &mut lat, errors, elapsed);

    let secret = {
        let mut tx = db.begin_write().await?;
        let anne = accounts::by_username(&mut tx, "anne")
            .await?
            .ok_or_else(|| anyhow::anyhow!("demo user missing"))?;
        let s = tokens::create(&mut tx, "bench", "patient/*.read", Some(anne.id)).await?;
        tx.commit().await?;
        s
    };
    let plain: Vec<_> = (0..options.clients)
        .map(|_| reqwest::Client::new())
        .collect();
    let (mut lat, errors, elapsed) = drive(
        plain,
        format!("{base}/fhir/r4/Observation?_count=20"),
        Some(secret),
        options.seconds,
    )
    .await;
    report(
        "FHIR Observation search (audited)",
        &mut lat,
        errors,
        elapsed,
    );

    if let Some(dir) = &options.samples {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        let r = crate::import::import_files(&db, "urn:bench", &files, false).await;
        println!(
            "{:<34} {:>8.0} resources/s ({} resources from {} files in {:.2} s)",
            "FHIR import (Synthea bundles)",
            r.rate(),
            r.resources_read,
            files.len(),
            r.seconds
        );
    }

    let ctx = RequestContext {
        client_addr: "bench".into(),
    };
    let actor =
        access_control::Actor::system(uuid::Uuid::nil(), "bench", access_control::Reach::WholeRole);
    let patients: Vec<PatientId> = (0..50).map(|_| PatientId(uuid::Uuid::now_v7())).collect();
    let started = Instant::now();
    let batch = 500;
    let mut written = 0;
    while written < options.audit_events {
        let mut tx = db.begin_write().await?;
        for i in 0..batch.min(options.audit_events - written) {
            let p = patients[((written + i) % patients.len() as u64) as usize];
            audit::append(
                &mut tx,
                NewEvent::by(&actor, &ctx, "read lab_results", Outcome::Allowed)
                    .about(p)
                    .resource("lab_results", None)
                    .basis("gp_listing"),
            )
            .await?;
        }
        tx.commit().await?;
        written += batch.min(options.audit_events - written);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>8.0} events/s ({written} events, batches of {batch})",
        "audit append (hash-chained)",
        written as f64 / elapsed
    );

    let mut conn = db.pool().acquire().await?;
    let started = Instant::now();
    let mut cursor = None;
    let mut pages = 0;
    while pages < 200 {
        let (_, next) =
            query::search(&mut conn, &query::Filter::default(), cursor.as_ref(), 50).await?;
        pages += 1;
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let per_page = started.elapsed().as_secs_f64() * 1000.0 / pages as f64;
    let filter = query::Filter {
        patient_id: Some(patients[7]),
        ..Default::default()
    };
    let started = Instant::now();
    query::search(&mut conn, &filter, cursor.as_ref(), 50).await?;
    println!(
        "{:<34} {:>8.2} ms per page of 50 (200 pages deep); one patient's page {:.2} ms",
        "audit search, keyset paging",
        per_page,
        started.elapsed().as_secs_f64() * 1000.0
    );

    let started = Instant::now();
    let verified = access_control::audit::verify::verify_all(&mut conn).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{:<34} {:>8.0} events/s ({} events in {} chains, intact: {})",
        "audit verify",
        verified.events as f64 / elapsed,
        verified.events,
        verified.chains,
        verified.is_intact()
    );
    Ok(())
}
