//! Crash safety: a real `portal` process takes FHIR transaction Bundles and a stream of audited
//! reads, and is killed with SIGKILL at random moments, several times. After each restart every
//! write the client saw acknowledged is there, no Bundle is half-applied, and `portal audit
//! verify` passes. On both engines.

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use records_domain::model::Source;
use records_domain::store::patients;
use records_domain::{Db, PoolSettings};
use serde_json::{json, Value};

use crate::support::process::{self, portal, run_ok, token_from};

const ROUNDS: usize = 4;
const OBSERVATIONS_PER_BUNDLE: usize = 5;

async fn start(database_url: &str) -> (Child, String) {
    process::serve(database_url, &[]).await
}

fn bundle(n: u64) -> Value {
    let patient = format!("crash-p{n}");
    let mut entries = vec![
        json!({"fullUrl": format!("urn:uuid:{patient}"), "resource": {
        "resourceType": "Patient", "id": patient, "name": [{"family": "Crash", "given": [format!("Test{n}")]}],
        "gender": if n.is_multiple_of(2) { "female" } else { "male" }, "birthDate": "1970-01-01"}}),
    ];
    for i in 0..OBSERVATIONS_PER_BUNDLE {
        entries.push(json!({"resource": {"resourceType": "Observation", "id": format!("crash-o{n}-{i}"), "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2951-2", "display": "Sodium"}]},
            "subject": {"reference": format!("urn:uuid:{patient}")}, "effectiveDateTime": "2026-11-01T08:00:00+00:00",
            "valueQuantity": {"value": 140 + i, "unit": "mmol/L"}}}));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[derive(Default)]
struct Acknowledged {
    bundles: Vec<u64>,
    reads: u64,
}

/// Writers and readers hammer the server until it dies under them.
async fn load(
    base: &str,
    lab_token: &str,
    reader_token: &str,
    next: &Arc<Mutex<u64>>,
    acked: &Arc<Mutex<Acknowledged>>,
    alive: &Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (client, base, token, next, acked, alive) = (
            client.clone(),
            base.to_string(),
            lab_token.to_string(),
            next.clone(),
            acked.clone(),
            alive.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while alive.load(Ordering::SeqCst) {
                let n = {
                    let mut next = next.lock().unwrap();
                    *next += 1;
                    *next
                };
                let sent = client
                    .post(format!("{base}/fhir/r4"))
                    .bearer_auth(&token)
                    .body(bundle(n).to_string())
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().as_u16() == 200) {
                    acked.lock().unwrap().bundles.push(n);
                }
            }
        }));
    }
    for _ in 0..2 {
        let (client, base, token, acked, alive) = (
            client.clone(),
            base.to_string(),
            reader_token.to_string(),
            acked.clone(),
            alive.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while alive.load(Ordering::SeqCst) {
                let sent = client
                    .get(format!("{base}/fhir/r4/Observation?_count=5"))
                    .bearer_auth(&token)
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status().as_u16() == 200) {
                    acked.lock().unwrap().reads += 1;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn crash_rounds(database_url: String) {
    run_ok(&database_url, &["seed"]);
    let lab = token_from(&run_ok(
        &database_url,
        &[
            "token",
            "add",
            "--name",
            "crash-register",
            "--scopes",
            "system/Patient.write system/*.write",
        ],
    ));
    let reader = token_from(&run_ok(
        &database_url,
        &[
            "token",
            "add",
            "--name",
            "crash-reader",
            "--scopes",
            "patient/*.read",
            "--user",
            "anne",
        ],
    ));
    let next = Arc::new(Mutex::new(0u64));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for _ in 0..ROUNDS {
        let (mut child, base) = start(&database_url).await;
        let alive = Arc::new(AtomicBool::new(true));
        let load_task = {
            let (base, lab, reader, next, acked, alive) = (
                base.clone(),
                lab.clone(),
                reader.clone(),
                next.clone(),
                acked.clone(),
                alive.clone(),
            );
            tokio::spawn(async move { load(&base, &lab, &reader, &next, &acked, &alive).await })
        };
        let uptime = rand::thread_rng().gen_range(300..1500);
        tokio::time::sleep(Duration::from_millis(uptime)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        alive.store(false, Ordering::SeqCst);
        let _ = load_task.await;
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.bundles.len() >= ROUNDS,
        "the load reached the server ({} bundles)",
        acked.bundles.len()
    );
    assert!(acked.reads > 0);

    let db = Db::connect(&database_url, &PoolSettings::default())
        .await
        .unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    let source = "urn:portal:client:crash-register";
    for n in &acked.bundles {
        let id = format!("crash-p{n}");
        let patient = patients::by_source(
            &mut conn,
            &Source {
                system: source.into(),
                id: id.clone(),
            },
        )
        .await
        .unwrap();
        assert!(
            patient.is_some(),
            "acknowledged bundle {n} lost its patient"
        );
    }
    // Whole bundles or nothing: every crash patient that exists has all its observations.
    let counts = sqlx::query("SELECT p.source_id, COUNT(l.id) AS n FROM patients p LEFT JOIN lab_results l ON l.patient_id = p.id WHERE p.source_system = $1 GROUP BY p.source_id")
        .bind(source)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for row in &counts {
        use sqlx::Row;
        let n: i64 = row.try_get("n").unwrap();
        assert_eq!(
            n as usize,
            OBSERVATIONS_PER_BUNDLE,
            "half-applied bundle {}",
            row.try_get::<String, _>("source_id").unwrap()
        );
    }
    let filter = access_control::audit::query::Filter {
        action: Some("read lab_results".into()),
        outcome: Some("allowed".into()),
        ..Default::default()
    };
    let audited_reads = access_control::audit::query::count(&mut conn, &filter)
        .await
        .unwrap();
    assert!(
        audited_reads as u64 >= acked.reads,
        "every acknowledged read was audited ({audited_reads} events for {} reads)",
        acked.reads
    );
    drop(conn);
    db.close().await;
    let verify = portal(&database_url, &["audit", "verify"])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify after crashes: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    println!(
        "crash test: {} rounds, {} bundles and {} reads acknowledged, all present",
        ROUNDS,
        acked.bundles.len(),
        acked.reads
    );
}

both_databases!(sigkill_loses_nothing_acknowledged, crash_rounds);
