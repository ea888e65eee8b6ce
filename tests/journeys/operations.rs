//! Operating a real `portal serve` process. Graceful shutdown: SIGTERM in the middle of audited
//! reads; every request either gets its whole answer or finds the port closed (no connection is
//! dropped mid-answer), the process exits 0 within its deadline, every acknowledged read's
//! audit event is in the database, and `portal audit verify` passes. Metrics: `/metrics` only
//! on its own listener, labelled by route template. On both engines.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use records_domain::{Db, PoolSettings};

use crate::support::process::{free_port, portal, serve};
use crate::support::Browser;

const CLIENTS: usize = 8;

fn reader_token(database_url: &str) -> String {
    for args in [
        &["seed"][..],
        &[
            "token",
            "add",
            "--name",
            "stop-reader",
            "--scopes",
            "patient/*.read",
            "--user",
            "anne",
        ],
    ] {
        let out = portal(database_url, args).output().expect("run portal");
        assert!(out.status.success(), "portal {args:?}: {out:?}");
        if args[0] == "token" {
            let stdout = String::from_utf8_lossy(&out.stdout);
            return stdout.rsplit(": ").next().unwrap_or("").trim().to_string();
        }
    }
    unreachable!("the loop returns the token")
}

fn sigterm(child: &Child) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
}

#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    refused: AtomicU64,
    dropped: AtomicU64,
}

/// One client that opens a new connection for every request, so that after the listener
/// closes each request is either refused at connect or was answered in full.
async fn reads(base: String, token: String, tally: Arc<Tally>, until_refused: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    while until_refused.load(Ordering::SeqCst) {
        let answer = client
            .get(format!("{base}/fhir/r4/Observation?_count=5"))
            .bearer_auth(&token)
            .send()
            .await;
        let answer = match answer {
            Ok(response) => response.bytes().await.map(|_| ()).map_err(|e| (e, false)),
            Err(e) => {
                let refused = e.is_connect();
                Err((e, refused))
            }
        };
        match answer {
            Ok(()) => tally.acknowledged.fetch_add(1, Ordering::SeqCst),
            Err((_, true)) => {
                tally.refused.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Err((e, false)) => {
                eprintln!("dropped: {e:?}");
                tally.dropped.fetch_add(1, Ordering::SeqCst)
            }
        };
    }
}

async fn audited_reads(database_url: &str) -> i64 {
    let db = Db::connect(database_url, &PoolSettings::default())
        .await
        .unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let filter = access_control::audit::query::Filter {
        action: Some("read lab_results".into()),
        outcome: Some("allowed".into()),
        ..Default::default()
    };
    let n = access_control::audit::query::count(&mut conn, &filter)
        .await
        .unwrap();
    drop(conn);
    db.close().await;
    n
}

async fn sigterm_under_load(database_url: String) {
    let token = reader_token(&database_url);
    let before = audited_reads(&database_url).await;
    let (mut child, base) = serve(&database_url, &[("PORTAL_SHUTDOWN_TIMEOUT", "20".into())]).await;

    let tally = Arc::new(Tally::default());
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(reads(
                base.clone(),
                token.clone(),
                tally.clone(),
                running.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stopping = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let stop_took = stopping.elapsed();
    // Clients still looping see the closed port and stop; a bound on the wait keeps a hang visible.
    tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(clients))
        .await
        .expect("every client saw the port close");
    running.store(false, Ordering::SeqCst);

    assert!(
        status.success(),
        "SIGTERM is a clean stop, not a kill: {status:?}"
    );
    assert!(
        stop_took < Duration::from_secs(20),
        "within the deadline: {stop_took:?}"
    );
    assert_eq!(
        tally.dropped.load(Ordering::SeqCst),
        0,
        "no connection dropped mid-answer"
    );
    assert_eq!(
        tally.refused.load(Ordering::SeqCst),
        CLIENTS as u64,
        "then refused"
    );
    let acknowledged = tally.acknowledged.load(Ordering::SeqCst);
    assert!(acknowledged > 0, "the load reached the server");
    let audited = audited_reads(&database_url).await - before;
    assert!(
        audited as u64 >= acknowledged,
        "every acknowledged read was audited ({audited} events for {acknowledged} reads)"
    );
    let verify = portal(&database_url, &["audit", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "audit verify: {verify:?}");
    println!("shutdown: {acknowledged} reads acknowledged, stopped in {stop_took:?}");
}

async fn metrics_on_their_own_listener(database_url: String) {
    let token = reader_token(&database_url);
    let metrics_port = free_port();
    let (mut child, base) = serve(
        &database_url,
        &[("PORTAL_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))],
    )
    .await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let read = client
            .get(format!("{base}/fhir/r4/Observation?_count=5"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status().as_u16(), 200);
    }
    let patient = "0b9f4a56-1c1e-4a8e-9d55-3f1a2b7c9e01";
    client
        .get(format!("{base}/clinician/patients/{patient}"))
        .send()
        .await
        .unwrap();
    let mut guesser = Browser::served(&base, &database_url);
    let refused = guesser.login_with("karen", "wrong-password-123").await;
    assert_eq!(refused.status, 401);
    let request_id = refused
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok());
    assert!(request_id.is_some(), "every answer names its request");
    let public = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        public.status().as_u16(),
        404,
        "no metrics on the public listener"
    );

    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |needles: &[&str]| {
        text.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no line with {needles:?} in\n{text}"))
            .to_string()
    };
    let reads = line(&[
        "portal_http_requests_total{",
        r#"route="/fhir/r4/Observation""#,
        r#"status="200""#,
    ]);
    assert!(reads.ends_with(" 3"), "{reads}");
    line(&[
        "portal_http_requests_total{",
        r#"route="/clinician/patients/{patient}""#,
    ]);
    line(&[
        "portal_http_requests_total{",
        r#"route="unmatched""#,
        r#"status="404""#,
    ]);
    line(&[
        "portal_http_request_duration_seconds",
        r#"route="/fhir/r4/Observation""#,
    ]);
    line(&["portal_db_pool_connections{", r#"pool="primary""#]);
    line(&["portal_audit_appends_total"]);
    line(&["portal_audit_batch_size"]);
    let failures = line(&["portal_login_failures_total{", r#"counted="true""#]);
    assert!(failures.ends_with(" 1"), "{failures}");
    assert!(!text.contains(patient), "raw paths never become labels");

    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

both_databases!(
    sigterm_finishes_requests_and_flushes_the_audit_log,
    sigterm_under_load
);

both_databases!(
    metrics_are_served_apart_by_route_template,
    metrics_on_their_own_listener
);
