//! The loaded population is one the real portal accepts: its audit chains verify, its users
//! sign in through the real forms (staff with their TOTP step), clinicians find and open their
//! listed patients, and every scenario of the harness runs against the portal without an error.
//! On SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.

use std::path::PathBuf;
use std::time::Duration;

use portal_bench::http::{Browser, Totp};
use portal_bench::population::{self, Spec};
use portal_bench::scenarios::{Fixture, ALL};
use records_domain::{Db, PoolSettings};

fn spec() -> Spec {
    Spec {
        patients: 300,
        patients_per_clinic: 100,
        min_clinicians: 8,
        auditors: 4,
        patient_users: 60,
        ..Spec::default()
    }
}

fn config(url: &str) -> portal::config::Config {
    portal::config::Config {
        bind: "127.0.0.1:0".parse().expect("address"),
        database_url: url.into(),
        database_read_url: None,
        db_max_connections: 8,
        db_acquire_timeout: Duration::from_secs(30),
        secure_cookies: false,
        demo: false,
        override_window: time::Duration::hours(2),
        policy: Default::default(),
        audit_retention_years: 10,
        // As the harness runs it: its clients claim their own addresses.
        trusted_proxies: 1,
        public_url: None,
        operations: Default::default(),
        log: portal::config::LogSettings::with_key(std::sync::Arc::new(
            transparency_log::SignerKey::generate(
                "bench.test/audit",
                transparency_log::KeyType::Ed25519,
            )
            .expect("a log key"),
        )),
    }
}

/// How many goals the loaded plans should have: each plan is drawn from the demo's templates
/// and keeps all of its template's goals.
async fn goals_of_the_plans_templates(db: &Db) -> i64 {
    let titles: Vec<String> = sqlx::query_scalar("SELECT title FROM treatment_plans")
        .fetch_all(db.pool())
        .await
        .expect("plan titles");
    titles
        .iter()
        .map(|title| {
            let (_, _, goals, _) = records_domain::demo::PLANS
                .iter()
                .find(|(t, ..)| t == title)
                .expect("every plan comes from a template");
            goals.len() as i64
        })
        .sum()
}

async fn loaded_population_serves_the_portal(url: String) {
    let spec = spec();
    let report = portal_bench::load::load(&url, &spec).await.expect("load");
    assert_eq!(report.spec.patients, 300);

    let db = Db::connect(&url, &PoolSettings::default())
        .await
        .expect("connect");
    let mut counts = Vec::new();
    for table in [
        "patients",
        "lab_results",
        "prescriptions",
        "treatment_plans",
        "plan_goals",
        "care_relationships",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(db.pool())
            .await
            .expect(table);
        counts.push(n);
    }
    let goals = goals_of_the_plans_templates(&db).await;
    assert_eq!(counts, vec![300, 300 * 30, 300 * 5, 300, goals, 300 / 50]);
    {
        let mut conn = db.pool().acquire().await.expect("connection");
        let verified = access_control::audit::verify::verify_all(&mut conn, &Default::default())
            .await
            .expect("verify");
        assert!(verified.is_intact(), "{:?}", verified.broken.first());
        assert_eq!(
            verified.chains, 301,
            "one chain per patient and the system chain"
        );
        assert_eq!(verified.events, 300 * 3 + spec.system_events());
    }

    let (addr, _server, _) = portal::app::spawn(config(&url))
        .await
        .expect("the portal starts on the loaded database");
    let base = format!("http://{addr}");

    // A citizen signs in with the shared password and sees their own record.
    let first = population::person(0);
    let mut citizen = Browser::new(&base).expect("client");
    citizen
        .sign_in(&population::patient_username(0), None, "/me")
        .await
        .expect("patient signs in");
    let me = citizen
        .client
        .get(format!("{base}/me"))
        .send()
        .await
        .expect("GET /me")
        .text()
        .await
        .expect("page");
    assert!(
        me.contains(first.family_name),
        "the overview names the patient"
    );

    // The GP opens a listed patient and finds them by CPR number; the portal takes the TOTP step.
    let secrets = [0, 1]
        .map(|c| {
            let name = population::clinician_username(c);
            let secret = population::totp_secret(&name);
            (name, secret)
        })
        .into_iter()
        .collect();
    let totp = Totp::new(secrets, Default::default());
    let mut gp = Browser::new(&base).expect("client");
    gp.sign_in(
        &population::clinician_username(0),
        Some(&totp),
        "/clinician",
    )
    .await
    .expect("clinician signs in with TOTP");
    let record = gp
        .client
        .get(format!("{base}/clinician/patients/{}", first.id))
        .send()
        .await
        .expect("record");
    assert_eq!(record.status(), 200, "patient 0 is listed with clinic 0");
    let found = gp
        .client
        .post(format!("{base}/clinician/lookup"))
        .form(&[("cpr", first.cpr.as_str()), ("csrf", gp.csrf.as_str())])
        .send()
        .await
        .expect("lookup")
        .text()
        .await
        .expect("page");
    assert!(found.contains(&format!("/clinician/patients/{}", first.id)));
    // Patient 150 is listed with another clinic: the portal refuses clinician 0 its record.
    let elsewhere = gp
        .client
        .get(format!(
            "{base}/clinician/patients/{}",
            population::patient_id(150)
        ))
        .send()
        .await
        .expect("record");
    assert_eq!(elsewhere.status(), 403);

    // Every scenario of the harness runs against this portal without an error.
    let fixture_db = Db::connect(&url, &PoolSettings::default())
        .await
        .expect("connect");
    let mut fixture = Fixture::load(fixture_db, &base).await.expect("fixture");
    let samples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../samples/fhir");
    for scenario in ALL {
        let workers = fixture
            .workers(scenario, 2, &samples)
            .await
            .unwrap_or_else(|e| panic!("{scenario}: {e:#}"));
        let groups = workers.iter().map(|(g, _)| g + 1).max().unwrap_or(0);
        let measured =
            portal_bench::drive::drive(workers, Duration::ZERO, Duration::from_millis(400))
                .await
                .unwrap();
        assert_eq!(measured.len(), groups);
        for m in &measured {
            assert_eq!(m.errors, 0, "{scenario}: {:?}", m.first_error);
            assert!(m.requests > 0, "{scenario}: nothing answered");
        }
        if *scenario == "fhir-import" {
            assert!(measured[0].units >= 100, "each Bundle stores its resources");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    loaded_population_serves_the_portal(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL variant skipped");
        return;
    };
    let (server, _) = admin_url
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL names a database");
    let name = format!("portal_test_bench_{}", std::process::id());
    let admin = Db::connect(&admin_url, &PoolSettings::default())
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await
        .expect("create");
    loaded_population_serves_the_portal(format!("{server}/{name}")).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await;
}
