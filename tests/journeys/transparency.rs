//! The transparency log as its three parties meet it: a patient downloads proofs of their
//! events and checks them with two verifiers that share no code; an insider with full
//! database rights rewrites the log three ways and `audit verify` names each; a witness
//! cosigns the log's checkpoints and refuses a history rewritten behind its back.

use std::process::Command;

use access_control::audit::log;
use base64::Engine as _;
use records_domain::Engine;
use transparency_log::{
    verify_download, AuditDownload, Checkpoint, KeyType, SignedNote, SignerKey,
};

use crate::support::{self, process, TestApp, LOG_KEY};

fn anne_sql() -> &'static str {
    "SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'"
}

/// A clinician reads Anne's record and Anne looks at who did; returns Anne's patient id.
async fn accesses(app: &TestApp) -> String {
    let anne = app.text(anne_sql()).await;
    let mut hansen = app.signed_in("dr.hansen").await;
    for path in ["", "/labs", "/prescriptions"] {
        hansen
            .get(&format!("/clinician/patients/{anne}{path}"))
            .await
            .assert_ok();
    }
    anne
}

fn python_verifier() -> Option<std::path::PathBuf> {
    let ready = Command::new("python3")
        .args([
            "-c",
            "import cryptography.hazmat.primitives.asymmetric.ed25519",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../tools/verify_audit_download.py"),
        );
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run the Python verifier: pip install -r tools/requirements.txt"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "skipped the Python verifier: python3 with `cryptography` is not installed"
    );
    None
}

/// Both verifiers' verdicts on a download file: (Rust `portal audit verify-proof`, Python).
fn verdicts(file: &std::path::Path, key: &str) -> (bool, Option<bool>) {
    let rust = process::portal("sqlite://unused", &["audit", "verify-proof"])
        .arg(file)
        .args(["--log-key", key])
        .output()
        .expect("run portal audit verify-proof");
    let python = python_verifier().map(|script| {
        Command::new("python3")
            .arg(script)
            .arg(file)
            .args(["--log-key", key])
            .status()
            .expect("run the Python verifier")
            .success()
    });
    (rust.status.success(), python)
}

both_engines!(
    a_patient_proves_their_events_are_in_the_signed_log,
    |app: TestApp| async move {
        let anne = accesses(&app).await;
        let mut patient = app.signed_in("anne").await;
        let page = patient.get("/me/access-log").await;
        assert!(
            page.has("a[href='/me/access-log/proof.json']"),
            "the page offers the download"
        );
        let download = patient.get("/me/access-log/proof.json").await;
        assert_eq!(download.status, 200, "{}", download.body);
        let key = LOG_KEY.verifier();
        let verified = verify_download(&download.body, Some(&key)).expect("the download verifies");
        let parsed: AuditDownload = serde_json::from_str(&download.body).unwrap();
        assert!(verified.events >= 3, "the three record views at least");
        let entries: Vec<String> = parsed
            .events
            .iter()
            .map(|e| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&e.entry)
                    .unwrap();
                String::from_utf8(bytes).unwrap()
            })
            .collect();
        assert!(
            entries.iter().all(|e| e.contains(&anne)),
            "only Anne's events: {entries:?}"
        );
        assert!(entries.iter().any(|e| e.contains("Hansen")));
        assert!(
            entries.iter().any(|e| e.contains("\"proof\"")),
            "the download's own access is in it"
        );
        // The served checkpoint is the one the download leads to, or a later one.
        let mut anyone = app.browser();
        let served = anyone.get("/transparency/checkpoint").await;
        let checkpoint = Checkpoint::open(&SignedNote::parse(&served.body).unwrap(), &key).unwrap();
        assert!(checkpoint.size >= verified.checkpoint.size);
        assert_eq!(
            anyone.get("/transparency/key").await.body.trim(),
            key.to_string()
        );

        // The two verifiers agree on the download and on a tampered copy of it.
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, &download.body).unwrap();
        let (rust, python) = verdicts(&good, &key.to_string());
        assert!(rust, "portal audit verify-proof accepts the download");
        assert_ne!(python, Some(false), "the Python verifier accepts it");
        let mut tampered = parsed.clone();
        let by_hansen = entries.iter().position(|e| e.contains("Hansen")).unwrap();
        let forged = entries[by_hansen].replace("Hansen", "Nobody");
        tampered.events[by_hansen].entry = base64::engine::general_purpose::STANDARD.encode(forged);
        let bad = dir.path().join("tampered.json");
        std::fs::write(&bad, serde_json::to_string(&tampered).unwrap()).unwrap();
        let (rust, python) = verdicts(&bad, &key.to_string());
        assert!(!rust, "portal audit verify-proof refuses a changed event");
        assert_ne!(python, Some(true), "the Python verifier refuses it too");
        let other = SignerKey::generate("portal.test/audit", KeyType::Ed25519).unwrap();
        let (rust, python) = verdicts(&good, &other.verifier().to_string());
        assert!(
            !rust,
            "a download signed by another key than the published one"
        );
        assert_ne!(python, Some(true));
    }
);

/// What a malicious administrator runs first: the log's protections switched off.
fn unprotect(engine: Engine) -> Vec<String> {
    const TABLES: [&str; 6] = [
        "audit_events",
        "audit_log_leaves",
        "audit_log_nodes",
        "audit_checkpoints",
        "audit_checkpoint_cosignatures",
        "audit_log_head",
    ];
    match engine {
        Engine::Sqlite => {
            let mut triggers = vec!["audit_events_no_update".to_string()];
            triggers.extend(TABLES[..5].iter().map(|t| format!("{t}_no_delete")));
            triggers.push("audit_log_head_only_grows".into());
            triggers
                .iter()
                .map(|t| format!("DROP TRIGGER IF EXISTS {t}"))
                .collect()
        }
        Engine::Postgres => TABLES
            .iter()
            .map(|t| format!("ALTER TABLE {t} DISABLE TRIGGER USER"))
            .collect(),
    }
}

/// Run statements as the database's owner, protections off, in one transaction, so that the
/// portal's own publisher never sees the log half rewritten.
async fn as_insider(db: &records_domain::Db, statements: &[String]) {
    let mut tx = db.pool().begin().await.unwrap();
    for sql in unprotect(db.engine()).iter().chain(statements) {
        sqlx::query(sql)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    tx.commit().await.unwrap();
}

async fn verify(app: &TestApp, outside: &[String]) -> access_control::audit::verify::VerifyReport {
    let mut trust = support::log_trust();
    trust.outside = outside.to_vec();
    let mut conn = app.db.pool().acquire().await.unwrap();
    access_control::audit::verify::verify_all(&mut conn, &trust)
        .await
        .unwrap()
}

/// The hash chains verify (the insider made them agree), and the log reports a problem that
/// says every one of `words`.
async fn only_the_log_names(app: &TestApp, words: &[&str]) {
    let report = verify(app, &[]).await;
    assert!(
        report.broken.is_empty(),
        "the hash chains alone see nothing: {:?}",
        report.broken
    );
    assert!(
        report
            .log
            .problems
            .iter()
            .any(|p| words.iter().all(|w| p.contains(w))),
        "{words:?} in {:?}",
        report.log.problems
    );
}

/// The statements that throw the whole log away and queue every event again, so that the
/// next publish builds a tree of the rewritten history.
fn rebuild_log() -> Vec<String> {
    [
        "DELETE FROM audit_checkpoint_cosignatures",
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_log_nodes",
        "DELETE FROM audit_log_leaves",
        "DELETE FROM audit_log_queue",
        "UPDATE audit_log_head SET size = 0, frontier = ''",
        "INSERT INTO audit_log_queue (event_id) SELECT id FROM audit_events",
    ]
    .map(String::from)
    .to_vec()
}

both_engines!(
    an_insider_with_full_rights_cannot_rewrite_the_log_unnoticed,
    |app: TestApp| async move {
        let anne = accesses(&app).await;
        publish_all(&app).await;
        let clean = verify(&app, &[]).await;
        assert!(
            clean.is_intact(),
            "{:?} {:?}",
            clean.broken,
            clean.log.problems
        );
        assert!(clean.log.size > 0 && clean.log.checkpoints > 0);
        // What a witness or a patient kept: the checkpoint of that moment.
        let mut conn = app.db.pool().acquire().await.unwrap();
        let kept = access_control::audit::log::checkpoints(&mut conn, 1)
            .await
            .unwrap()
            .pop()
            .unwrap()
            .note;
        drop(conn);

        // 1. Delete Anne's last event and move her chain's head back: the chain alone agrees.
        let (last_seq, last_id) = {
            use sqlx::Row;
            let row = sqlx::query(&format!(
                "SELECT seq, id, prev_hash FROM audit_events WHERE chain_key = '{anne}' ORDER BY seq DESC LIMIT 1"
            ))
            .fetch_one(app.db.pool())
            .await
            .unwrap();
            let prev: String = row.get(2);
            as_insider(
                &app.db,
                &[
                    format!("DELETE FROM audit_events WHERE id = '{}'", row.get::<String, _>(1)),
                    format!(
                        "UPDATE audit_chains SET last_seq = last_seq - 1, last_hash = '{prev}' WHERE chain_key = '{anne}'"
                    ),
                ],
            )
            .await;
            (row.get::<i64, _>(0), row.get::<String, _>(1))
        };
        only_the_log_names(
            &app,
            &[&format!("event {last_seq} of chain {anne}"), "deleted"],
        )
        .await;
        // 1b. The cover-up goes on: the deleted event's leaf row goes too. The leaf's hash
        //     stays in the signed tree, and names no event any more.
        as_insider(
            &app.db,
            &[format!(
                "DELETE FROM audit_log_leaves WHERE event_id = '{last_id}'"
            )],
        )
        .await;
        only_the_log_names(&app, &["names no event any more"]).await;

        // 2. Rewrite the remaining history and rebuild the log with the stolen signing key:
        //    the database is consistent again, and only the kept checkpoint knows better.
        as_insider(&app.db, &rebuild_log()).await;
        publish_all(&app).await;
        let local = verify(&app, &[]).await;
        assert!(
            local.is_intact(),
            "with the key and the database, a rewrite is consistent in itself: {:?}",
            local.log.problems
        );
        let report = verify(&app, std::slice::from_ref(&kept)).await;
        assert!(!report.is_intact());
        assert!(
            report
                .log
                .problems
                .iter()
                .any(|p| p.contains("outside checkpoint 1 covers") && p.contains("were removed")),
            "{:?}",
            report.log.problems
        );

        // 3. Rewrite a whole chain consistently: one event's actor changed and every hash
        //    after it recomputed, the head moved to match. The chain verifies; its leaf does not.
        let restored = verify(&app, &[]).await;
        assert!(restored.is_intact());
        let patient = records_domain::model::PatientId(anne.parse().unwrap());
        let mut conn = app.db.pool().acquire().await.unwrap();
        let mut chain = access_control::audit::query::chain_of(&mut conn, patient)
            .await
            .unwrap();
        drop(conn);
        chain.sort_by_key(|e| e.seq);
        let victim = chain
            .iter()
            .position(|e| e.actor_name.contains("Hansen"))
            .unwrap();
        let victim_id = chain[victim].id.to_string();
        chain[victim].actor_name = "Nobody".into();
        let mut rewrite = Vec::new();
        for i in victim..chain.len() {
            if i > victim {
                chain[i].prev_hash = chain[i - 1].hash.clone();
            }
            chain[i].hash = chain[i].compute_hash();
            rewrite.push(format!(
                "UPDATE audit_events SET actor_name = '{}', prev_hash = '{}', hash = '{}' WHERE id = '{}'",
                chain[i].actor_name.replace('\'', "''"),
                chain[i].prev_hash,
                chain[i].hash,
                chain[i].id
            ));
        }
        let head = chain.last().unwrap().hash.clone();
        rewrite.push(format!(
            "UPDATE audit_chains SET last_hash = '{head}' WHERE chain_key = '{anne}'"
        ));
        as_insider(&app.db, &rewrite).await;
        only_the_log_names(&app, &[&victim_id, "changed"]).await;
    }
);

/// `portal witness --once` against `origin`.
fn witness(origin: &str, dir: &std::path::Path) -> (bool, String) {
    let out = process::portal("sqlite://unused", &["witness", "--once"])
        .args(["--log-url", origin])
        .args(["--log-key", &LOG_KEY.verifier().to_string()])
        .arg("--key-file")
        .arg(dir.join("witness.key"))
        .args(["--name", "authority.test/witness"])
        .arg("--state-file")
        .arg(dir.join("witnessed.note"))
        .output()
        .expect("run portal witness");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

both_databases!(
    a_witness_cosigns_the_log_and_refuses_a_rewritten_history,
    |url: String| async move {
        let dir = tempfile::tempdir().unwrap();
        let witness_key =
            SignerKey::generate("authority.test/witness", KeyType::CosignatureV1).unwrap();
        std::fs::write(dir.path().join("witness.key"), witness_key.to_secret_text()).unwrap();
        let env = [
            ("PORTAL_WITNESS_KEYS", witness_key.verifier().to_string()),
            ("PORTAL_CHECKPOINT_INTERVAL", "1".to_string()),
            ("PORTAL_DEMO", "true".to_string()),
        ];
        let (portal, origin) = process::Instance::start(&url, &env).await;
        let client = reqwest::Client::new();
        let signed = wait_for_checkpoint(&client, &origin).await;
        let first = client
            .get(format!("{origin}/transparency/checkpoint"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // A cosignature by a key the portal does not trust is refused, not stored.
        let stranger =
            SignerKey::generate("stranger.test/witness", KeyType::CosignatureV1).unwrap();
        let mut note = SignedNote::parse(&first).unwrap();
        note.cosign(&stranger, 1).unwrap();
        let refused = client
            .post(format!("{origin}/transparency/cosignature"))
            .body(note.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        let (ok, said) = witness(&origin, dir.path());
        assert!(ok, "{said}");
        let listed: serde_json::Value = client
            .get(format!("{origin}/transparency/checkpoints"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(
            listed[0]["witnesses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w == "authority.test/witness"),
            "{listed}"
        );
        assert!(listed[0]["size"].as_u64().unwrap() >= signed);
        portal.stop();

        // The insider deletes the newest event and rebuilds the log with the signing key.
        rewrite_history(&url).await;
        let (portal, origin) = process::Instance::start(&url, &env).await;
        wait_for_checkpoint(&client, &origin).await;
        let (ok, said) = witness(&origin, dir.path());
        assert!(!ok, "the witness refuses: {said}");
        assert!(said.contains("FORK"), "{said}");
        portal.stop();
        // The witness's copy, handed to `audit verify`, names the rewrite.
        let out = process::portal(&url, &["audit", "verify", "--checkpoint"])
            .arg(dir.path().join("witnessed.note"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(
            said.contains("BROKEN: outside checkpoint 1 covers") && said.contains("were removed"),
            "{said}"
        );
    }
);

async fn wait_for_checkpoint(client: &reqwest::Client, origin: &str) -> u64 {
    for _ in 0..100 {
        if let Ok(answer) = client
            .get(format!("{origin}/transparency/checkpoint"))
            .send()
            .await
        {
            if answer.status().is_success() {
                let note = SignedNote::parse(&answer.text().await.unwrap()).unwrap();
                return Checkpoint::open(&note, &LOG_KEY.verifier()).unwrap().size;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the portal signed no checkpoint within 10 s");
}

/// The insider deletes the newest event, moves its chain back and rebuilds the log.
async fn rewrite_history(url: &str) {
    use sqlx::Row;
    let db = records_domain::Db::connect(url, &Default::default())
        .await
        .unwrap();
    let last = sqlx::query(
        "SELECT e.id, e.chain_key, e.prev_hash FROM audit_events e \
         JOIN audit_chains c ON c.chain_key = e.chain_key AND c.last_seq = e.seq \
         ORDER BY e.occurred_at DESC LIMIT 1",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let (id, chain, prev): (String, String, String) = (last.get(0), last.get(1), last.get(2));
    let mut statements = vec![
        format!("DELETE FROM audit_events WHERE id = '{id}'"),
        format!(
            "UPDATE audit_chains SET last_seq = last_seq - 1, last_hash = '{prev}' WHERE chain_key = '{chain}'"
        ),
    ];
    statements.extend(rebuild_log());
    as_insider(&db, &statements).await;
    db.close().await;
}

both_engines!(
    an_auditor_sees_the_checkpoints_and_proves_any_event,
    |app: TestApp| async move {
        let anne = accesses(&app).await;
        let victim = app
            .text(&format!(
                "SELECT id FROM audit_events WHERE chain_key = '{anne}' AND actor_name LIKE '%Hansen%' ORDER BY seq LIMIT 1"
            ))
            .await;
        let mut auditor = app.signed_in("auditor").await;
        let proof = auditor.get(&format!("/audit/events/{victim}/proof")).await;
        assert_eq!(proof.status, 200, "{}", proof.body);
        let verified = verify_download(&proof.body, Some(&LOG_KEY.verifier())).unwrap();
        assert_eq!(verified.events, 1);
        let page = auditor.get("/audit/checkpoints").await;
        page.assert_ok();
        let rows = page.table_rows("table");
        assert!(!rows.is_empty(), "{}", page.body);
        assert!(rows
            .iter()
            .any(|r| r[0] == verified.checkpoint.size.to_string()));
        assert!(page.contains(&LOG_KEY.verifier().to_string()));
        assert_eq!(
            auditor
                .get(&format!("/audit/events/{}/proof", uuid::Uuid::now_v7()))
                .await
                .status,
            404
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_events WHERE action IN ('download event proof', 'view log checkpoints')")
                .await,
            3,
            "each look is itself audited"
        );

        // The same proof through FHIR, for an auditor's tool; nobody else's.
        let mut tx = app.db.begin_write().await.unwrap();
        let auditor_id = access_control::accounts::by_username(&mut tx, "auditor")
            .await
            .unwrap()
            .unwrap()
            .id;
        let token = access_control::tokens::create(
            &mut tx,
            "audit-tool",
            "user/AuditEvent.read",
            Some(auditor_id),
        )
        .await
        .unwrap();
        let lab = access_control::tokens::create(&mut tx, "lab", "system/*.write", None)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let answer = app
            .browser_with_bearer(&token)
            .get(&format!("/fhir/r4/AuditEvent/{victim}/$proof"))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let parameters: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(parameters["resourceType"], "Parameters");
        let named = |name: &str| -> Vec<String> {
            parameters["parameter"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"] == name)
                .map(|p| {
                    p.get("valueString")
                        .or(p.get("valueBase64Binary"))
                        .and_then(|v| v.as_str())
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let rebuilt = AuditDownload {
            format: transparency_log::DOWNLOAD_FORMAT.into(),
            log_key: named("logKey")[0].clone(),
            witness_keys: named("witnessKey"),
            checkpoint: named("checkpoint")[0].clone(),
            events: vec![transparency_log::DownloadedEvent {
                leaf_index: named("leafIndex")[0].parse().unwrap(),
                entry: named("leaf")[0].clone(),
                inclusion_proof: named("inclusionProof")
                    .iter()
                    .map(|h| transparency_log::Hash::from_base64(h).unwrap())
                    .collect(),
            }],
        };
        verify_download(
            &serde_json::to_string(&rebuilt).unwrap(),
            Some(&LOG_KEY.verifier()),
        )
        .expect("the FHIR proof verifies as a download");
        let refused = app
            .browser_with_bearer(&lab)
            .get(&format!("/fhir/r4/AuditEvent/{victim}/$proof"))
            .await;
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
);

static WITNESS: std::sync::LazyLock<SignerKey> = std::sync::LazyLock::new(|| {
    SignerKey::generate("authority.test/witness", KeyType::CosignatureV1).unwrap()
});

both_engines!(
    a_patients_download_prefers_a_witnessed_checkpoint_but_never_hides_an_access,
    with |config: &mut portal::config::Config| {
        config.log.witnesses = vec![WITNESS.verifier()];
    },
    |app: TestApp| async move {
        let anne = accesses(&app).await;
        publish_all(&app).await;
        let mut conn = app.db.pool().acquire().await.unwrap();
        let newest = access_control::audit::log::checkpoints(&mut conn, 1)
            .await
            .unwrap()
            .pop()
            .unwrap();
        drop(conn);
        let mut note = SignedNote::parse(&newest.note).unwrap();
        note.cosign(&WITNESS, 1_700_000_000).unwrap();
        let added = access_control::audit::log::add_cosignatures(
            &app.db,
            &note.to_string(),
            &LOG_KEY.verifier(),
            &[WITNESS.verifier()],
        )
        .await
        .unwrap();
        assert_eq!(added, 1);

        let mut patient = app.signed_in("anne").await;
        let download = patient.get("/me/access-log/proof.json").await;
        assert_eq!(download.status, 200, "{}", download.body);
        let verified = verify_download(&download.body, Some(&LOG_KEY.verifier())).unwrap();
        assert_eq!(verified.checkpoint.size, newest.size, "the witnessed checkpoint");
        assert_eq!(verified.witnesses.len(), 1, "with its cosignature checked");

        // A clinician looks again after the witness's last cosignature: the download must show
        // it, so it proves against the newest checkpoint instead.
        let mut hansen = app.signed_in("dr.hansen").await;
        hansen
            .get(&format!("/clinician/patients/{anne}/plans"))
            .await
            .assert_ok();
        let download = patient.get("/me/access-log/proof.json").await;
        let verified = verify_download(&download.body, Some(&LOG_KEY.verifier())).unwrap();
        assert!(verified.checkpoint.size > newest.size);
        let parsed: AuditDownload = serde_json::from_str(&download.body).unwrap();
        let last_view = parsed.events.iter().any(|e| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&e.entry)
                .unwrap();
            String::from_utf8(bytes).unwrap().contains("treatment_plans")
        });
        assert!(last_view, "the access after the cosignature is in the download");
    }
);

/// Publish until the queue is empty, as the portal's publisher does over several rounds.
async fn publish_all(app: &TestApp) {
    while log::publish(&app.db, &LOG_KEY).await.unwrap().more {}
}
