//! The audit log: the database refuses changes, tampering is detected and named (by the
//! workbench and by `portal audit verify`), concurrent appends keep every chain valid, and the
//! auditor's filters, paging, export and review queue return exactly what they should.

use crate::support::{self, Page};

use std::process::Command;

use access_control::audit::query as audit_query;
use access_control::audit::{self, NewEvent, Outcome, GENESIS_HASH};
use access_control::{accounts, tokens, Actor, RequestContext, Role};
use hmac::{Hmac, Mac};
use records_domain::model::PatientId;
use records_domain::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;
use support::TestApp;
use uuid::Uuid;

/// A clinician appending audit events directly, and where they connect from.
fn writer(name: &str) -> (Actor, RequestContext) {
    let actor = Actor {
        user_id: Uuid::now_v7(),
        name: name.into(),
        role: Role::Clinician,
        clinic_id: None,
        patient_id: None,
        reach: access_control::Reach::WholeRole,
    };
    let ctx = RequestContext {
        client_addr: "127.0.0.1".into(),
    };
    (actor, ctx)
}

fn verify_cli(app: &TestApp) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", &app.database_url)
        .env("PORTAL_LOG", "warn")
        .env(
            "PORTAL_LOG_KEY_FILE",
            crate::support::process::log_key_file(),
        )
        .output()
        .expect("portal audit verify runs")
}

/// A realistic mixed workload: logins, record views, a denial, an override, a block.
async fn workload(app: &TestApp) {
    let anne = app
        .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await;
    let mut hansen = app.signed_in("dr.hansen").await;
    for path in ["", "/labs", "/prescriptions", "/plans"] {
        hansen
            .get(&format!("/clinician/patients/{anne}{path}"))
            .await
            .assert_ok();
    }
    let mut larsen = app.signed_in("dr.larsen").await;
    let base = format!("/clinician/patients/{anne}");
    assert_eq!(larsen.get(&base).await.status, 403);
    larsen.get(&format!("{base}/override")).await;
    larsen
        .post(
            &format!("{base}/override"),
            &[("reason", "Found unconscious, checking for anticoagulants")],
        )
        .await
        .assert_ok();
    let mut patient = app.signed_in("anne").await;
    patient.get("/me/access-log").await.assert_ok();
    app.browser()
        .login_with("anne", "wrong-password-here")
        .await;
}

both_engines!(
    the_database_refuses_changes_to_audit_events,
    |app: TestApp| async move {
        workload(&app).await;
        for sql in [
            "UPDATE audit_events SET reason = 'nothing to see'",
            "DELETE FROM audit_events",
        ] {
            let refused = sqlx::query(sql).execute(app.db.pool()).await;
            let message = refused.expect_err(sql).to_string();
            assert!(message.contains("append-only"), "{sql}: {message}");
        }
        if app.engine == Engine::Postgres {
            assert!(sqlx::query("TRUNCATE audit_events CASCADE")
                .execute(app.db.pool())
                .await
                .is_err());
            let privileges = app.text("SELECT CAST(has_table_privilege('portal_app', 'audit_events', 'UPDATE') AS TEXT)",
            )
            .await;
            assert_eq!(
                privileges, "false",
                "the application role may not update audit events"
            );
        }
        let out = verify_cli(&app);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("all chains intact"));
    }
);

/// Anne reports one of Dr. Hansen's looks at her record and an auditor answers; returns the
/// review's id. Both through the pages, as the two of them would.
async fn reported_and_answered(app: &TestApp) -> String {
    let anne = app
        .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await;
    let event = app
        .text(&format!(
            "SELECT id FROM audit_events WHERE patient_id = '{anne}' AND action = 'read lab_results'"
        ))
        .await;
    let mut patient = app.signed_in("anne").await;
    patient.get("/me/access-log").await.assert_ok();
    patient
        .post(
            &format!("/me/access-log/{event}/report"),
            &[("comment", "I have never been to this clinic")],
        )
        .await
        .assert_ok();
    let review = app
        .text(&format!(
            "SELECT id FROM audit_reviews WHERE event_id = '{event}' AND kind = 'patient_report'"
        ))
        .await;
    let mut auditor = app.signed_in("auditor").await;
    auditor.get("/audit/reviews").await.assert_ok();
    auditor
        .post(
            &format!("/audit/reviews/{review}/close"),
            &[(
                "note",
                "The GP prepared your appointment; confirmed with the clinic.",
            )],
        )
        .await
        .assert_ok();
    review
}

both_engines!(
    a_patients_report_and_its_answer_cannot_be_deleted_or_rewritten,
    |app: TestApp| async move {
        workload(&app).await;
        let review = reported_and_answered(&app).await;
        let reviews = app.count("SELECT COUNT(*) FROM audit_reviews").await;
        for sql in [
            format!("UPDATE audit_reviews SET comment = 'withdrawn' WHERE id = '{review}'"),
            format!("DELETE FROM audit_review_closures WHERE review_id = '{review}'"),
            format!("DELETE FROM audit_reviews WHERE id = '{review}'"),
            "DELETE FROM audit_reviews".to_string(),
            "UPDATE audit_review_closures SET note = 'Nothing found.'".to_string(),
            "DELETE FROM audit_review_closures".to_string(),
        ] {
            let refused = sqlx::query(&sql).execute(app.db.pool()).await;
            let message = refused.expect_err(&sql).to_string();
            assert!(message.contains("append-only"), "{sql}: {message}");
        }
        if app.engine == Engine::Postgres {
            for table in ["audit_reviews", "audit_review_closures"] {
                assert!(sqlx::query(&format!("TRUNCATE {table} CASCADE"))
                    .execute(app.db.pool())
                    .await
                    .is_err());
                for privilege in ["UPDATE", "DELETE", "TRUNCATE"] {
                    let granted = app
                        .text(&format!(
                            "SELECT CAST(has_table_privilege('portal_app', '{table}', '{privilege}') AS TEXT)"
                        ))
                        .await;
                    assert_eq!(granted, "false", "portal_app may not {privilege} {table}");
                }
            }
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_reviews").await,
            reviews
        );
        let mut patient = app.signed_in("anne").await;
        let log = patient.get("/me/access-log").await;
        assert!(
            log.select_text("[role=status]")
                .iter()
                .any(|n| n.contains("An auditor answered: The GP prepared your appointment")),
            "{}",
            log.body
        );
    }
);

/// An event's hash by the README's recipe (encoding 2), computed from the patient's download
/// alone: `hex(SHA-256(canonical || prev_hash))`.
fn recomputed(e: &serde_json::Value) -> String {
    let canonical = serde_json::json!([
        e["encoding"],
        e["seq"],
        e["id"],
        e["occurred_at"],
        e["actor_id"],
        e["actor_name"],
        e["actor_role"],
        e["actor_clinic_id"],
        e["on_behalf_of"],
        e["patient_id"],
        e["action"],
        e["resource_type"],
        e["resource_id"],
        e["basis"],
        e["outcome"],
        e["reason"],
        e["client_addr_commitment"]
    ])
    .to_string();
    let prev_hash = e["prev_hash"].as_str().unwrap_or_default();
    hex::encode(Sha256::digest(format!("{canonical}{prev_hash}")))
}

/// `hex(HMAC-SHA256(key, address))`, as an auditor computes it with any HMAC tool.
fn commitment(key_hex: &str, address: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(&hex::decode(key_hex).unwrap()).unwrap();
    mac.update(address.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

both_engines!(
    the_patients_chain_shows_no_staff_address_and_still_verifies,
    |app: TestApp| async move {
        workload(&app).await;
        let anne_cpr = app
            .text("SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        let mut patient = app.signed_in("anne").await;
        let download = patient.get("/me/access-log/chain.json").await;
        download.assert_ok();
        // Every request of the test comes from 127.0.0.1, the clinicians' included.
        assert!(
            !download.contains("127.0.0.1") && !download.contains("client_addr_key"),
            "{}",
            download.body
        );
        let chain: serde_json::Value = serde_json::from_str(&download.body).unwrap();
        let events = chain["events"].as_array().unwrap();
        assert!(events.iter().any(|e| e["actor_name"] == "Dr. Mette Hansen"));

        // The README's recipe, recomputed here without the portal's code.
        let mut prev_hash = GENESIS_HASH.to_string();
        for e in events {
            assert_eq!(e["encoding"], 2);
            assert!(e.get("client_addr").is_none(), "{e}");
            assert_eq!(e["prev_hash"], prev_hash.as_str(), "linked: {e}");
            assert_eq!(e["hash"], recomputed(e).as_str(), "recomputed: {e}");
            prev_hash = recomputed(e);
        }

        // The auditor's export holds each event's address and key: given both, anyone can
        // confirm that an event of Anne's chain came from that address, and from no other.
        let mut auditor = app.signed_in("auditor").await;
        auditor.get("/audit").await.assert_ok();
        let csv = auditor
            .post("/audit/export.csv", &[("cpr", &anne_cpr)])
            .await;
        csv.assert_ok();
        let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
        let header = reader.headers().unwrap().clone();
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let looked = events
            .iter()
            .find(|e| e["actor_name"] == "Dr. Mette Hansen")
            .unwrap();
        let row = rows
            .iter()
            .find(|r| r[column("id")] == *looked["id"].as_str().unwrap())
            .expect("the event is in the export");
        let (address, key) = (&row[column("client_addr")], &row[column("client_addr_key")]);
        assert_eq!(address, "127.0.0.1");
        assert_eq!(commitment(key, address), looked["client_addr_commitment"]);
        assert_ne!(
            commitment(key, "127.0.0.2"),
            looked["client_addr_commitment"]
        );

        // The stored address stays tamper-evident: changed, it no longer matches.
        let victim = looked["id"].as_str().unwrap();
        let tamper = match app.engine {
            Engine::Sqlite => "DROP TRIGGER audit_events_no_update",
            Engine::Postgres => "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update",
        };
        sqlx::query(tamper).execute(app.db.pool()).await.unwrap();
        sqlx::query("UPDATE audit_events SET client_addr = '192.0.2.1' WHERE id = $1")
            .bind(victim)
            .execute(app.db.pool())
            .await
            .unwrap();
        let out = verify_cli(&app);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            stdout.contains(victim) && stdout.contains("client address"),
            "{stdout}"
        );
    }
);

both_engines!(
    events_stored_before_the_address_commitment_still_verify,
    |app: TestApp| async move {
        // A patient whose chain starts before the commitment existed: every patient registered
        // today has a chain from their registration, so this one is inserted beside the portal,
        // listed with Dr. Hansen's practice, with a login of her own.
        let clinic = app
            .text("SELECT p.gp_clinic_id FROM patients p JOIN users u ON u.patient_id = p.id WHERE u.username = 'anne'")
            .await;
        let karen = Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO patients (id, national_id, given_name, family_name, birth_date, sex, gp_clinic_id, \
             source_system, source_id, created_at) \
             VALUES ($1, '0303031234', 'Kirsten', 'Older', '1903-03-03', 'female', $2, 'urn:test', $1, '2025-01-01T00:00:00.000000Z')",
        )
        .bind(&karen)
        .bind(&clinic)
        .execute(app.db.pool())
        .await
        .unwrap();
        {
            let hash = accounts::hash_password("kirsten-older-2026").unwrap();
            let mut tx = app.db.begin_write().await.unwrap();
            let new = accounts::NewUser {
                username: "kirsten".into(),
                display_name: "Kirsten Older".into(),
                role: Role::Patient,
                patient_id: Some(PatientId(Uuid::parse_str(&karen).unwrap())),
                clinic_id: None,
                totp_secret: None,
                must_change_password: false,
            };
            accounts::create(&mut tx, &new, &hash).await.unwrap();
            tx.commit().await.unwrap();
        }
        // Two events as the portal stored them before migration 0011: the hash covers the
        // address itself (encoding 1), and there is no key or commitment.
        let mut prev_hash = GENESIS_HASH.to_string();
        for seq in 1..=2i64 {
            let id = Uuid::now_v7().to_string();
            let at = format!("2025-0{seq}-01T08:00:00.000000Z");
            let canonical = serde_json::json!([
                seq,
                id,
                at,
                null,
                "Dr. Former",
                "clinician",
                null,
                null,
                karen,
                "read lab_results",
                "lab_results",
                null,
                "gp_listing",
                "allowed",
                "",
                "10.1.2.3"
            ])
            .to_string();
            let hash = hex::encode(Sha256::digest(format!("{canonical}{prev_hash}")));
            sqlx::query(
                "INSERT INTO audit_events (id, chain_key, seq, occurred_at, actor_name, actor_role, \
                 patient_id, action, resource_type, basis, outcome, reason, client_addr, prev_hash, hash) \
                 VALUES ($1, $2, $3, $4, 'Dr. Former', 'clinician', $2, 'read lab_results', 'lab_results', \
                 'gp_listing', 'allowed', '', '10.1.2.3', $5, $6)",
            )
            .bind(&id)
            .bind(&karen)
            .bind(seq)
            .bind(&at)
            .bind(&prev_hash)
            .bind(&hash)
            .execute(app.db.pool())
            .await
            .unwrap();
            // Migration 0014 queued every event stored before it for the transparency log.
            sqlx::query("INSERT INTO audit_log_queue (event_id) VALUES ($1)")
                .bind(&id)
                .execute(app.db.pool())
                .await
                .unwrap();
            prev_hash = hash;
        }
        sqlx::query("INSERT INTO audit_chains (chain_key, last_seq, last_hash) VALUES ($1, 2, $2)")
            .bind(&karen)
            .bind(&prev_hash)
            .execute(app.db.pool())
            .await
            .unwrap();
        // Today's events continue the same chain in the new encoding.
        let mut hansen = app.signed_in("dr.hansen").await;
        hansen
            .get(&format!("/clinician/patients/{karen}/labs"))
            .await
            .assert_ok();
        let verify = verify_cli(&app);
        let stdout = String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && stdout.contains("all chains intact"),
            "{stdout}"
        );

        // Karen's copy: the old events without their address (only the auditors can recompute
        // those hashes), linked to the new ones, which she recomputes herself.
        let mut patient = app.browser();
        patient
            .login_with("kirsten", "kirsten-older-2026")
            .await
            .assert_ok();
        let download = patient.get("/me/access-log/chain.json").await;
        download.assert_ok();
        assert!(
            !download.contains("10.1.2.3") && !download.contains("127.0.0.1"),
            "{}",
            download.body
        );
        let chain: serde_json::Value = serde_json::from_str(&download.body).unwrap();
        let events = chain["events"].as_array().unwrap();
        assert_eq!(events[0]["prev_hash"], GENESIS_HASH);
        assert!(events[..2].iter().all(|e| e["encoding"] == 1));
        assert!(events.len() > 2 && events[2..].iter().all(|e| e["encoding"] == 2));
        for pair in events.windows(2) {
            assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "linked: {}", pair[1]);
        }
        for e in &events[2..] {
            assert_eq!(e["hash"], recomputed(e).as_str(), "recomputed: {e}");
        }
    }
);

/// On SQLite one connection writes at a time. An auditor's FHIR AuditEvent search, which may
/// count and load 100,000 events, reads without taking that lock: while another connection
/// holds it with an uncommitted event, the search reads the log as committed, and only its own
/// audit event waits for the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_audit_event_search_reads_without_the_write_lock() {
    let app = TestApp::spawn(Engine::Sqlite).await;
    let mut tx = app.db.begin_write().await.unwrap();
    let auditor = accounts::by_username(&mut tx, "auditor")
        .await
        .unwrap()
        .unwrap()
        .id;
    let token = tokens::create(&mut tx, "audit-tool", "user/AuditEvent.read", Some(auditor))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let committed = app.count("SELECT COUNT(*) FROM audit_events").await;

    let mut held = app.db.begin_write().await.unwrap();
    let (actor, ctx) = writer("Dr. Slow Writer");
    audit::append(
        &mut held,
        NewEvent::by(&actor, &ctx, "read summary", Outcome::Allowed),
    )
    .await
    .unwrap();
    let mut audit_tool = app.browser_with_bearer(&token);
    let search = tokio::spawn(async move {
        let answer = audit_tool.get("/fhir/r4/AuditEvent?_count=1").await;
        let bundle: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        (answer.status, bundle)
    });
    // Long enough for the search to read; well inside SQLite's 5 s busy timeout for its append.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(
        !search.is_finished(),
        "the search's own event waits for the writer: no audit, no access"
    );
    held.commit().await.unwrap();
    let (status, bundle) = search.await.unwrap();
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(
        bundle["total"].as_i64(),
        Some(committed),
        "read before the held write committed, so without waiting for the write lock"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'fhir AuditEvent search'")
            .await,
        1
    );
}

both_engines!(tampering_is_detected_and_named, |app: TestApp| async move {
    workload(&app).await;
    let anne = app
        .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await;
    let victim = app.text(&format!("SELECT id FROM audit_events WHERE chain_key = '{anne}' AND action = 'read lab_results'")).await;
    // A malicious administrator with database access disables the protection first.
    let tamper = match app.engine {
        Engine::Sqlite => vec![
            "DROP TRIGGER audit_events_no_update".to_string(),
            format!("UPDATE audit_events SET actor_name = 'Nobody' WHERE id = '{victim}'"),
        ],
        Engine::Postgres => vec![
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update".to_string(),
            format!("UPDATE audit_events SET actor_name = 'Nobody' WHERE id = '{victim}'"),
        ],
    };
    for sql in tamper {
        sqlx::query(&sql).execute(app.db.pool()).await.unwrap();
    }
    let report = app.verify_audit_log().await;
    assert!(!report.is_intact());
    assert_eq!(report.broken[0].chain_key, anne);
    assert_eq!(report.broken[0].event_id.as_deref(), Some(victim.as_str()));

    let out = verify_cli(&app);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("BROKEN: patient {anne}")) && stdout.contains(&victim),
        "{stdout}"
    );

    let mut auditor = app.signed_in("auditor").await;
    let page = auditor.get("/audit/verify").await;
    page.assert_ok();
    assert!(page.select_text("[role=alert]")[0].contains("broken links"));
    let broken = page.table_rows("table");
    assert!(broken.iter().any(|row| row[2] == victim), "{broken:?}");
});

both_engines!(
    concurrent_appends_keep_every_chain_valid,
    |app: TestApp| async move {
        let patients: Vec<PatientId> = sqlx::query("SELECT id FROM patients ORDER BY id LIMIT 3")
            .fetch_all(app.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| PatientId(Uuid::parse_str(&r.get::<String, _>("id")).unwrap()))
            .collect();
        let before = app.count("SELECT COUNT(*) FROM audit_events").await;
        let mut writers = Vec::new();
        for w in 0..8 {
            let db = app.db.clone();
            let patients = patients.clone();
            writers.push(tokio::spawn(async move {
                let (actor, ctx) = writer(&format!("Writer {w}"));
                for i in 0..25 {
                    let mut tx = db.begin_write().await.unwrap();
                    let event = NewEvent::by(&actor, &ctx, "read summary", Outcome::Allowed)
                        .about(patients[(w + i) % 3]);
                    audit::append(&mut tx, event).await.unwrap();
                    tx.commit().await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_events").await,
            before + 200
        );
        app.assert_audit_log_intact().await;
        let mut conn = app.db.pool().acquire().await.unwrap();
        for p in &patients {
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, MAX(seq) AS top FROM audit_events WHERE chain_key = $1",
            )
            .bind(p.0.to_string())
            .fetch_one(&mut *conn)
            .await
            .unwrap();
            assert_eq!(
                row.get::<i64, _>("n"),
                row.get::<i64, _>("top"),
                "sequence without gaps or duplicates"
            );
        }
    }
);

both_engines!(
    filters_paging_and_export_are_exact,
    |app: TestApp| async move {
        workload(&app).await;
        let anne_cpr = app.text("SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
        )
        .await;
        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        let mut auditor = app.signed_in("auditor").await;
        auditor.get("/audit").await.assert_ok();

        let by_patient = auditor.post("/audit", &[("cpr", &anne_cpr)]).await;
        by_patient.assert_ok();
        let expected = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}'"
            ))
            .await;
        // The search's own event about Anne is appended after its query ran.
        assert_eq!(
            event_rows(&by_patient).len() as i64,
            (expected - 1).min(50),
            "{expected}"
        );
        let formatted = format!("{}-{}", &anne_cpr[..6], &anne_cpr[6..]);
        assert!(
            event_rows(&by_patient)
                .iter()
                .all(|row| row[3] == format!("Anne Jensen CPR {formatted}")),
            "the patient by name and CPR number, not an internal id"
        );

        let denied = auditor
            .post("/audit", &[("outcome", "denied"), ("actor", "dr.larsen")])
            .await;
        let denied = event_rows(&denied);
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert_eq!(
            (denied[0][1].as_str(), denied[0][5].as_str()),
            ("Dr. Jens Larsen clinician, Lægerne Aarhus C", "denied")
        );
        let overrides = auditor
            .post("/audit", &[("basis", "emergency_override")])
            .await;
        let overrides = event_rows(&overrides);
        assert!(!overrides.is_empty());
        assert!(overrides.iter().all(|row| row[4] == "emergency_override"));
        assert!(
            overrides
                .iter()
                .any(|row| row[6].starts_with("Found unconscious")),
            "{overrides:?}"
        );

        // Keyset paging walks every event exactly once.
        let total = app.count("SELECT COUNT(*) FROM audit_events").await;
        let mut seen = 0;
        let mut page = auditor.post("/audit", &[]).await;
        loop {
            seen += event_rows(&page).len();
            let (Some(at), Some(id)) = (page.input_value("after_at"), page.input_value("after_id"))
            else {
                break;
            };
            page = auditor
                .post("/audit", &[("after_at", &at), ("after_id", &id)])
                .await;
        }
        // The searches themselves were appended while paging; everything before them was seen.
        assert!(seen as i64 >= total, "paged through {seen} of {total}");

        let csv = auditor
            .post("/audit/export.csv", &[("cpr", &anne_cpr)])
            .await;
        csv.assert_ok();
        assert!(csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let expected = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}'"
            ))
            .await;
        assert_eq!(
            rows.len() as i64,
            expected,
            "exactly the matching events, the export's own event included"
        );
        assert!(rows.iter().all(|r| r[9] == anne));
    }
);

both_engines!(
    filters_at_the_end_of_time_are_refused_clearly,
    |app: TestApp| async move {
        let mut auditor = app.signed_in("auditor").await;
        auditor.get("/audit").await.assert_ok();
        for fields in [
            vec![("until", "9999-12-31")],
            vec![("from", "2026-01-01"), ("until", "9999-12-31")],
            vec![("after_at", "yesterday"), ("after_id", "1")],
        ] {
            let page = auditor.post("/audit", &fields).await;
            assert_eq!(page.status, 400, "{fields:?}: {}", page.body);
            assert!(
                page.has("[role=alert]") && page.has("form input[name=until]"),
                "a message on the form: {}",
                page.body
            );
            let csv = auditor.post("/audit/export.csv", &fields).await;
            assert_eq!(csv.status, 400, "{fields:?}: {}", csv.body);
        }
        let page = auditor.post("/audit", &[("until", "9999-12-31")]).await;
        assert_eq!(
            page.select_text("[role=alert]"),
            ["The last day must be before 9999-12-31."]
        );
        assert_eq!(
            page.input_value("until").as_deref(),
            Some("9999-12-31"),
            "what was typed is kept"
        );
        // The day before the end of time is a valid last day.
        auditor
            .post("/audit", &[("until", "9999-12-30")])
            .await
            .assert_ok();
    }
);

both_engines!(
    review_queue_closes_with_an_audited_note,
    |app: TestApp| async move {
        workload(&app).await;
        let mut auditor = app.signed_in("auditor").await;
        let queue = auditor.get("/audit/reviews").await;
        queue.assert_ok();
        assert!(queue
            .select_text("article.review h2")
            .iter()
            .any(|h| h == "Override after a refusal · open"));
        assert!(queue
            .select_text("article.review p")
            .iter()
            .any(|p| p.contains("Found unconscious")));
        let review = app
            .text("SELECT id FROM audit_reviews WHERE id NOT IN (SELECT review_id FROM audit_review_closures)")
            .await;
        let short = auditor
            .post(&format!("/audit/reviews/{review}/close"), &[("note", "ok")])
            .await;
        assert_eq!(short.status, 400);
        let closed = auditor
            .post(
                &format!("/audit/reviews/{review}/close"),
                &[(
                    "note",
                    "Confirmed with the emergency department: admitted unconscious.",
                )],
            )
            .await;
        closed.assert_ok();
        assert!(closed
            .select_text(&format!("#r-{review} p"))
            .iter()
            .any(|p| p.starts_with("Closed ")
                && p.ends_with("Confirmed with the emergency department: admitted unconscious.")));
        assert_eq!(
            auditor
                .post(
                    &format!("/audit/reviews/{review}/close"),
                    &[("note", "Second close attempt")]
                )
                .await
                .status,
            409
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'close review'")
                .await,
            1
        );

        let stats = auditor.get("/audit/stats").await;
        stats.assert_ok();
        assert!(stats.has("figure.chart svg rect.bar"));
        let per_clinician = stats.table_rows("table");
        assert!(
            per_clinician
                .iter()
                .skip(1)
                .any(|row| row[0].starts_with("Dr.")),
            "{per_clinician:?}"
        );
        // The page reads a rollup kept as events are appended; it must agree with the events.
        let first_day = time::OffsetDateTime::now_utc().date() - time::Duration::days(29);
        for row in per_clinician.iter().skip(1) {
            let of_clinician = format!(
                "FROM audit_events WHERE actor_role = 'clinician' AND patient_id IS NOT NULL \
                 AND actor_name = '{}' AND occurred_at >= '{first_day}'",
                row[0]
            );
            let allowed = app
                .count(&format!(
                    "SELECT COUNT(*) {of_clinician} AND outcome = 'allowed'"
                ))
                .await;
            let denied = app
                .count(&format!(
                    "SELECT COUNT(*) {of_clinician} AND outcome = 'denied'"
                ))
                .await;
            let overrides = app
                .count(&format!(
                    "SELECT COUNT(*) {of_clinician} AND outcome = 'allowed' \
                     AND basis = 'emergency_override'"
                ))
                .await;
            let outside_list = app
                .count(&format!(
                    "SELECT COUNT(*) {of_clinician} AND outcome = 'allowed' \
                     AND basis <> 'gp_listing'"
                ))
                .await;
            let counted = [allowed, overrides, outside_list, denied].map(|n| n.to_string());
            let shown = [&row[1], &row[3], &row[5], &row[6]].map(String::as_str);
            assert_eq!(shown, counted.each_ref().map(String::as_str), "{row:?}");
        }
        let verify = auditor.get("/audit/verify").await;
        assert!(verify.select_text("[role=status]")[0].starts_with("Intact: "));
        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        for path in [
            "/me".to_string(),
            format!("/clinician/patients/{anne}"),
            "/admin/users".to_string(),
        ] {
            assert_eq!(
                auditor.get(&path).await.status,
                403,
                "auditors see no clinical data: {path}"
            );
        }
    }
);

fn portal_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portal"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("PORTAL_LOG", "warn")
        .env(
            "PORTAL_LOG_KEY_FILE",
            crate::support::process::log_key_file(),
        )
        .env_remove("PORTAL_AUDIT_RETENTION_YEARS")
        .output()
        .expect("portal runs")
}

both_engines!(
    pruning_past_retention_keeps_chains_verifiable,
    |app: TestApp| async move {
        // Two patients whose chains start with the old events this test writes (every
        // registered patient's chain starts with their registration, so these are inserted
        // beside the portal).
        let mut fresh = Vec::new();
        for cpr in ["0101011234", "0202021234"] {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO patients (id, national_id, given_name, family_name, birth_date, sex, \
                 source_system, source_id, created_at) \
                 VALUES ($1, $2, 'Old', 'Timer', '1901-01-01', 'female', 'urn:test', $1, '2026-01-01T00:00:00.000000Z')",
            )
            .bind(id.to_string())
            .bind(cpr)
            .execute(app.db.pool())
            .await
            .unwrap();
            fresh.push(PatientId(id));
        }
        let (old_and_new, all_old) = (fresh[0], fresh[1]);
        let (actor, ctx) = writer("Dr. Former System");
        let now = time::OffsetDateTime::now_utc();
        let mut tx = app.db.begin_write().await.unwrap();
        let event = |p: PatientId| {
            NewEvent::by(&actor, &ctx, "read summary", Outcome::Allowed)
                .about(p)
                .resource("summary", None)
        };
        for i in 0..5 {
            audit::append_at(
                &mut tx,
                event(old_and_new),
                now - time::Duration::days(365 * 12) + time::Duration::minutes(i),
            )
            .await
            .unwrap();
        }
        audit::append_at(
            &mut tx,
            event(old_and_new),
            now - time::Duration::days(365 * 9),
        )
        .await
        .unwrap();
        audit::append(&mut tx, event(old_and_new)).await.unwrap();
        for i in 0..3 {
            audit::append_at(
                &mut tx,
                event(all_old),
                now - time::Duration::days(365 * 11) + time::Duration::minutes(i),
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();

        // A patient's report on one of the old events, answered: append-only like the event,
        // it goes with the event in a prune and not before.
        let old_event = Uuid::parse_str(
            &app.text(&format!(
                "SELECT id FROM audit_events WHERE chain_key = '{}' AND seq = 1",
                old_and_new.0
            ))
            .await,
        )
        .unwrap();
        let mut conn = app.db.pool().acquire().await.unwrap();
        audit_query::open_review(
            &mut conn,
            old_event,
            Some(old_and_new),
            audit_query::REVIEW_PATIENT_REPORT,
            "Who is this?",
        )
        .await
        .unwrap();
        let review = audit_query::reviews(&mut conn, "open", 100)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.event_id == old_event)
            .unwrap();
        assert!(
            audit_query::close_review(&mut conn, review.id, "A former colleague.", "auditor")
                .await
                .unwrap()
        );
        drop(conn);
        assert!(sqlx::query("DELETE FROM audit_reviews WHERE event_id = $1")
            .bind(old_event.to_string())
            .execute(app.db.pool())
            .await
            .is_err());

        // Without a prune window nothing may be deleted, and with one nothing younger than ten years.
        let refused = sqlx::query("DELETE FROM audit_events WHERE chain_key = $1")
            .bind(old_and_new.0.to_string())
            .execute(app.db.pool())
            .await;
        assert!(refused.is_err());
        let mut tx = app.db.begin_write().await.unwrap();
        sqlx::query("INSERT INTO audit_prune_window (id, before) VALUES (1, '9999')")
            .execute(&mut *tx)
            .await
            .unwrap();
        let early = sqlx::query("DELETE FROM audit_events WHERE chain_key = $1 AND seq = 6")
            .bind(old_and_new.0.to_string())
            .execute(&mut *tx)
            .await;
        assert!(
            early.is_err(),
            "the database keeps ten years whatever the window says"
        );
        drop(tx);

        assert!(
            !portal_cli(&app, &["audit", "prune", "--retention-years", "5"])
                .status
                .success()
        );
        let pruned = portal_cli(&app, &["audit", "prune"]);
        let stdout = String::from_utf8_lossy(&pruned.stdout);
        assert!(
            pruned.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&pruned.stderr)
        );
        assert!(
            stdout.contains("8 events older than 10 years removed from 2 chains"),
            "{stdout}"
        );
        let remaining = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE chain_key = '{}'",
                old_and_new.0
            ))
            .await;
        assert_eq!(
            remaining, 3,
            "the 9-year-old event, today's event and the prune record"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_reviews").await
                + app
                    .count("SELECT COUNT(*) FROM audit_review_closures")
                    .await,
            0,
            "the report and its answer went with their event"
        );
        let verify = verify_cli(&app);
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );

        // An anchor changed afterwards no longer matches the chain or its prune record.
        let other = "1".repeat(64);
        sqlx::query("UPDATE audit_chains SET pruned_hash = $1 WHERE chain_key = $2")
            .bind(&other)
            .bind(old_and_new.0.to_string())
            .execute(app.db.pool())
            .await
            .unwrap();
        let report = app.verify_audit_log().await;
        assert_eq!(report.broken.len(), 1);
        assert_eq!(report.broken[0].chain_key, old_and_new.0.to_string());
    }
);

both_engines!(
    verify_during_live_appends_sees_no_false_breaks,
    |app: TestApp| async move {
        let patient = PatientId(
            Uuid::parse_str(
                &app.text("SELECT id FROM patients ORDER BY id LIMIT 1")
                    .await,
            )
            .unwrap(),
        );
        let writer = {
            let db = app.db.clone();
            tokio::spawn(async move {
                let (actor, ctx) = writer("Writer");
                for _ in 0..60 {
                    let mut tx = db.begin_write().await.unwrap();
                    audit::append(
                        &mut tx,
                        NewEvent::by(&actor, &ctx, "read summary", Outcome::Allowed).about(patient),
                    )
                    .await
                    .unwrap();
                    tx.commit().await.unwrap();
                }
            })
        };
        // Each check runs on one snapshot: heads and events always agree, however the appends fall.
        while !writer.is_finished() {
            app.assert_audit_log_intact().await;
        }
        writer.await.unwrap();
    }
);

/// In production the portal connects as a member of `portal_app`, not as the schema owner:
/// it serves, signs in, audits, and the database denies it any change to the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeys_on_postgres),
    ignore = "TEST_DATABASE_URL is not set: the PostgreSQL variant did not run"
)]
async fn the_application_role_serves_and_cannot_touch_the_audit_log() {
    let app = TestApp::spawn_postgres_as(Some("portal_web_test")).await;
    let mut anne = app.signed_in("anne").await;
    anne.get("/me/labs").await.assert_ok();
    for sql in [
        "UPDATE audit_events SET reason = 'x'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "UPDATE audit_reviews SET comment = 'x'",
        "DELETE FROM audit_reviews",
        "TRUNCATE audit_reviews",
        "UPDATE audit_review_closures SET note = 'x'",
        "DELETE FROM audit_review_closures",
    ] {
        let refused = sqlx::query(sql)
            .execute(app.db.pool())
            .await
            .expect_err(sql);
        assert!(
            refused.to_string().contains("permission denied"),
            "{sql}: {refused}"
        );
    }
    assert!(
        app.count("SELECT COUNT(*) FROM audit_events WHERE action = 'read lab_results'")
            .await
            >= 1
    );
}

// Reads are audited through the group-committing writer: a page is shown only after its event
// is durable. When the database refuses the event, the page is an error and shows nothing.
both_engines!(
    no_audit_no_access_when_the_event_cannot_be_written,
    |app: TestApp| async move {
        let mut anne = app.signed_in("anne").await;
        let labs = anne.get("/me/labs").await;
        labs.assert_ok();
        assert!(labs.contains("HbA1c"));
        let mut hansen = app.signed_in("dr.hansen").await;
        let refuse = match app.engine {
        Engine::Sqlite => vec![
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit store down'); END",
        ],
        Engine::Postgres => vec![
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'audit store down'; END$$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
    };
        for sql in refuse {
            sqlx::query(sql).execute(app.db.pool()).await.unwrap();
        }
        let refused = anne.get("/me/labs").await;
        assert_eq!(refused.status, 500);
        assert!(
            !refused.contains("HbA1c"),
            "nothing of the record without its audit event"
        );
        let anne_id = app
            .text("SELECT patient_id FROM users WHERE username = 'anne'")
            .await;
        let record = hansen
            .get(&format!("/clinician/patients/{anne_id}/labs"))
            .await;
        assert_eq!(record.status, 500);
        assert!(!record.contains("HbA1c"));
        let restore = match app.engine {
            Engine::Sqlite => "DROP TRIGGER refuse_audit",
            Engine::Postgres => "DROP TRIGGER refuse_audit ON audit_events",
        };
        sqlx::query(restore).execute(app.db.pool()).await.unwrap();
        anne.get("/me/labs").await.assert_ok();
    }
);

/// The rows of the auditor's event table, without its head.
fn event_rows(page: &Page) -> Vec<Vec<String>> {
    page.table_rows("table.events")
        .into_iter()
        .skip(1)
        .collect()
}
