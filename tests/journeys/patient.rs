//! Patient self-service: a citizen's own record page by page, "who looked at my record" with the
//! report to the auditors, blocks, guardian and power-of-attorney proxies, and that no URL or
//! form reaches another patient's data.

use crate::support;

use access_control::accounts;
use access_control::audit::query as audit_query;
use access_control::{Gate, PolicySettings, Request, RequestContext};
use records_domain::model::PatientId;
use records_domain::store::Category;
use sqlx::Row;
use support::TestApp;
use uuid::Uuid;

async fn patient_id(app: &TestApp, given: &str, family: &str) -> PatientId {
    let row = sqlx::query("SELECT id FROM patients WHERE given_name = $1 AND family_name = $2")
        .bind(given)
        .bind(family)
        .fetch_one(app.db.pool())
        .await
        .expect("demo patient");
    PatientId(Uuid::parse_str(&row.get::<String, _>("id")).unwrap())
}

/// A clinician opens a category of a record the way the clinician pages do: through the gate.
async fn clinician_reads(
    app: &TestApp,
    username: &str,
    patient: PatientId,
    category: Category,
) -> Result<(), access_control::AccessError> {
    let mut conn = app.db.pool().acquire().await.unwrap();
    let actor = accounts::by_username(&mut conn, username)
        .await
        .unwrap()
        .unwrap()
        .actor();
    drop(conn);
    let settings = PolicySettings::default();
    let audit = access_control::audit::writer::AuditWriter::start(&app.db)
        .await
        .unwrap();
    let gate = Gate {
        db: &app.db,
        settings: &settings,
        audit: &audit,
    };
    let ctx = RequestContext {
        client_addr: "10.0.0.7".into(),
    };
    let req = Request {
        actor: &actor,
        ctx: &ctx,
        patient,
        resource_id: None,
    };
    gate.read(&req, category).await?.commit().await.unwrap();
    Ok(())
}

both_engines!(
    lab_results_grouped_with_history_and_chart,
    |app: TestApp| async move {
        let mut anne = app.signed_in("anne").await;
        let labs = anne.get("/me/labs").await;
        labs.assert_ok();
        assert!(labs
            .select_text("section.test-group h2")
            .contains(&"HbA1c".to_string()));
        let rows = labs.table_rows("section.test-group table");
        let header = ["Taken", "Value", "Reference range", "Flag"].map(String::from);
        let results: Vec<_> = rows.iter().filter(|r| **r != header).collect();
        assert!(!results.is_empty());
        for row in &results {
            let flag = row.last().map(String::as_str);
            assert!(
                matches!(
                    flag,
                    Some("Low" | "Normal" | "High" | "Critical" | "No range")
                ),
                "every value carries a flag: {row:?}"
            );
            assert!(
                !row[0].starts_with("2099"),
                "held-back results are not shown"
            );
        }
        assert!(labs.contains("Some results may be pending"));
        let history_link = labs
            .link_starting("/me/labs/")
            .expect("link to a test's history");
        let history = anne.get(&history_link).await;
        history.assert_ok();
        assert!(
            history.contains("<svg") && history.contains("class=\"band\""),
            "trend chart with reference band"
        );
        assert!(history.contains("All results, newest first"));
        assert_eq!(anne.get("/me/labs/no-such-code").await.status, 404);
    }
);

both_engines!(prescriptions_and_plans, |app: TestApp| async move {
    let mut anne = app.signed_in("anne").await;
    let rx = anne.get("/me/prescriptions").await;
    rx.assert_ok();
    assert!(rx.contains("Active prescriptions") && rx.contains("Past prescriptions"));
    assert!(rx.contains("Prescriber") && rx.contains("Dosage"));
    let plans = anne.get("/me/plans").await;
    plans.assert_ok();
    assert!(plans.contains("Goals") && plans.contains("Activities") && plans.contains("Status:"));
});

both_engines!(
    access_log_shows_who_and_why_and_takes_reports,
    |app: TestApp| async move {
        let anne_id = patient_id(&app, "Anne", "Jensen").await;
        let mut anne = app.signed_in("anne").await;
        anne.get("/me").await.assert_ok();
        clinician_reads(&app, "dr.hansen", anne_id, Category::LabResults)
            .await
            .unwrap();
        let overview = anne.get("/me").await;
        assert!(
            overview.contains("1 new access to this record since the last visit"),
            "{}",
            overview.body
        );
        assert!(
            !anne.get("/me").await.contains("new access"),
            "the notice counts only what is new"
        );

        let log = anne.get("/me/access-log").await;
        log.assert_ok();
        let entries = log.select_text("ol.access-log > li");
        let read = entries
            .iter()
            .find(|e| e.contains("read your test results"))
            .unwrap_or_else(|| panic!("the GP's read is listed in plain words: {entries:?}"));
        assert!(
            read.contains(
                "Dr. Mette Hansen (clinician, Lægehuset Nørrebro) read your test results"
            ),
            "who, role, clinic and what: {read}"
        );
        assert!(
            read.contains("Why they could: patient is listed with the clinician's practice"),
            "on what basis: {read}"
        );
        assert!(!read.contains("UTC"), "times are Danish local time: {read}");
        // A refused look, in words a patient understands: no internal codes, no empty field.
        let mut larsen = app.signed_in("dr.larsen").await;
        let cpr = app
            .text(&format!(
                "SELECT national_id FROM patients WHERE id = '{}'",
                anne_id.0
            ))
            .await;
        larsen.post("/clinician/lookup", &[("cpr", &cpr)]).await;
        let log = anne.get("/me/access-log").await;
        let refused = log
            .select_text("ol.access-log > li")
            .into_iter()
            .find(|e| e.contains("Dr. Jens Larsen"))
            .unwrap_or_else(|| panic!("the refused lookup is listed: {}", log.body));
        assert!(
            refused.contains("found your name in a search, but could not open your record")
                && refused.contains(
                    "They were not let in: you are not listed with their practice and they are not treating you."
                ),
            "{refused}"
        );
        assert!(
            !refused.contains("no_treatment_relationship") && !refused.contains("Basis:"),
            "{refused}"
        );
        assert!(!log.has("ol.access-log > li.emergency"));

        // Anne does not recognise it and tells the auditors.
        let event = app.text(&format!("SELECT id FROM audit_events WHERE patient_id = '{}' AND action = 'read lab_results'", anne_id.0)).await;
        let reported = anne
            .post(
                &format!("/me/access-log/{event}/report"),
                &[("comment", "I have never been to this clinic")],
            )
            .await;
        reported.assert_ok();
        assert!(reported.contains("An auditor will look into it"));
        let mut conn = app.db.pool().acquire().await.unwrap();
        let open = audit_query::reviews(&mut conn, "open", 100).await.unwrap();
        let review = open
            .iter()
            .find(|r| r.event_id.to_string() == event)
            .expect("in the auditors' queue");
        assert_eq!(review.comment, "I have never been to this clinic");
        audit_query::close_review(
            &mut conn,
            review.id,
            "The GP looked at your results before your appointment.",
            "auditor",
        )
        .await
        .unwrap();
        drop(conn);
        assert!(anne
            .get("/me/access-log")
            .await
            .contains("The GP looked at your results before your appointment."));

        let chain = anne.get("/me/access-log/chain.json").await;
        chain.assert_ok();
        let json: serde_json::Value = serde_json::from_str(&chain.body).unwrap();
        assert!(json["events"].as_array().unwrap().len() >= 3);
        assert_eq!(
            json["events"][0]["prev_hash"],
            access_control::audit::GENESIS_HASH
        );
    }
);

both_engines!(
    emergency_override_stands_out_with_its_reason,
    |app: TestApp| async move {
        let anne_id = patient_id(&app, "Anne", "Jensen").await;
        assert!(
            clinician_reads(&app, "dr.larsen", anne_id, Category::Prescriptions)
                .await
                .is_err(),
            "no relationship: denied"
        );
        let mut conn = app.db.pool().acquire().await.unwrap();
        let larsen = accounts::by_username(&mut conn, "dr.larsen")
            .await
            .unwrap()
            .unwrap()
            .actor();
        drop(conn);
        let ctx = RequestContext {
            client_addr: "10.0.0.8".into(),
        };
        access_control::care::grant_override(
            &app.db,
            &larsen,
            &ctx,
            anne_id,
            "Unconscious in the emergency room, need medication list",
            time::Duration::hours(2),
        )
        .await
        .unwrap();
        clinician_reads(&app, "dr.larsen", anne_id, Category::Prescriptions)
            .await
            .unwrap();
        let mut anne = app.signed_in("anne").await;
        let log = anne.get("/me/access-log").await;
        let overrides = log.select_text("ol.access-log > li.emergency");
        assert!(
            overrides.iter().any(|e| e.contains("Emergency override")
                && e.contains("Dr. Jens Larsen")
                && e.contains("Unconscious in the emergency room, need medication list")),
            "the override stands out with who and the reason: {overrides:?}"
        );
        assert!(
            log.select_text("ol.access-log > li .meta strong")
                .contains(&"Refused".to_string()),
            "the refused attempt before the override is shown too"
        );
    }
);

both_engines!(
    blocking_a_clinician_stops_them_until_lifted,
    |app: TestApp| async move {
        let anne_id = patient_id(&app, "Anne", "Jensen").await;
        clinician_reads(&app, "dr.hansen", anne_id, Category::LabResults)
            .await
            .unwrap();
        let mut anne = app.signed_in("anne").await;
        let page = anne.get("/me/blocks").await;
        page.assert_ok();
        let mut conn = app.db.pool().acquire().await.unwrap();
        let hansen = accounts::by_username(&mut conn, "dr.hansen")
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        let target = format!("clinician:{}", hansen.id);
        let blocked = anne
            .post("/me/blocks", &[("target", &target), ("until", "")])
            .await;
        blocked.assert_ok();
        assert!(blocked.contains("Lift block on"));
        let denied = clinician_reads(&app, "dr.hansen", anne_id, Category::LabResults).await;
        assert!(matches!(
            denied,
            Err(access_control::AccessError::Denied(
                access_control::Denial::BlockedByPatient
            ))
        ));

        let block_id = app
            .count("SELECT COUNT(*) FROM blocks WHERE lifted_at IS NULL")
            .await;
        assert_eq!(block_id, 1);
        let id = app.text("SELECT id FROM blocks").await;
        anne.post(&format!("/me/blocks/{id}/lift"), &[])
            .await
            .assert_ok();
        clinician_reads(&app, "dr.hansen", anne_id, Category::LabResults)
            .await
            .unwrap();

        // A period block ends by itself; a date in the past is refused with a clear message.
        let past = anne
            .post(
                "/me/blocks",
                &[("target", &target), ("until", "2020-01-01")],
            )
            .await;
        assert_eq!(past.status, 400);
        assert!(past.contains("at least until tomorrow"));
        let garbage = anne
            .post("/me/blocks", &[("target", "clinician:not-a-uuid")])
            .await;
        assert_eq!(garbage.status, 400);
        let stranger = anne
            .post(
                "/me/blocks",
                &[("target", &format!("clinician:{}", Uuid::now_v7()))],
            )
            .await;
        assert_eq!(stranger.status, 400);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM blocks").await,
            1,
            "no half writes"
        );
    }
);

both_engines!(
    guardian_sees_the_configured_categories_of_a_child,
    |app: TestApp| async move {
        let emil = patient_id(&app, "Emil", "Jensen").await;
        let mut anne = app.signed_in("anne").await;
        let proxies = anne.get("/me/proxies").await;
        proxies.assert_ok();
        assert!(proxies.contains("Open the record of Emil Jensen"));
        let overview = anne
            .post("/me/switch", &[("patient", &emil.0.to_string())])
            .await;
        overview.assert_ok();
        assert!(
            overview.contains("Emil Jensen") && overview.contains("you are viewing as guardian")
        );
        assert!(
            !overview.contains("Latest lab results"),
            "guardians do not see lab results by default"
        );
        let labs = anne.get("/me/labs").await;
        assert_eq!(labs.status, 403);
        assert!(labs.contains("Guardians do not see this part"));
        anne.get("/me/prescriptions").await.assert_ok();
        anne.get("/me/plans").await.assert_ok();
        anne.get("/me/access-log").await.assert_ok();
        let on_behalf = app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{}' AND on_behalf_of = '{}' AND basis = 'guardian'", emil.0, emil.0)).await;
        assert!(
            on_behalf >= 4,
            "proxy views are audited on behalf of the child ({on_behalf})"
        );
        // Consent pages always manage the user's own record.
        assert!(anne.get("/me/blocks").await.contains("Anne Jensen"));
        let back = anne.post("/me/switch", &[("patient", "")]).await;
        assert!(back.contains("your own record"));

        // On the 15th birthday guardian access ends.
        sqlx::query("UPDATE patients SET birth_date = '2000-01-01' WHERE id = $1")
            .bind(emil.0.to_string())
            .execute(app.db.pool())
            .await
            .unwrap();
        assert_eq!(
            anne.post("/me/switch", &[("patient", &emil.0.to_string())])
                .await
                .status,
            404
        );
        assert!(anne
            .get("/me/proxies")
            .await
            .contains("ended at the 15th birthday"));
    }
);

both_engines!(
    power_of_attorney_granted_used_and_revoked,
    |app: TestApp| async move {
        let anne_id = patient_id(&app, "Anne", "Jensen").await;
        let mut anne = app.signed_in("anne").await;
        anne.get("/me/proxies").await;
        let granted = anne
            .post(
                "/me/proxies/grant",
                &[("username", "bo"), ("from", ""), ("until", "")],
            )
            .await;
        granted.assert_ok();
        assert!(granted.contains("Revoke power of attorney of Bo Nielsen"));
        assert_eq!(
            anne.post("/me/proxies/grant", &[("username", "nobody-at-all")])
                .await
                .status,
            400
        );
        assert_eq!(
            anne.post(
                "/me/proxies/grant",
                &[
                    ("username", "bo"),
                    ("from", "2030-01-01"),
                    ("until", "2029-01-01")
                ]
            )
            .await
            .status,
            400
        );

        let mut bo = app.signed_in("bo").await;
        let held = bo.get("/me/proxies").await;
        assert!(
            held.contains("Open the record of Anne Jensen")
                && held.contains("Open the record of Karen")
        );
        let record = bo
            .post("/me/switch", &[("patient", &anne_id.0.to_string())])
            .await;
        record.assert_ok();
        assert!(record.contains("Anne Jensen") && record.contains("power of attorney"));
        bo.get("/me/labs").await.assert_ok();

        let proxy = app
            .text(&format!(
                "SELECT id FROM proxies WHERE patient_id = '{}' AND kind = 'power_of_attorney'",
                anne_id.0
            ))
            .await;
        anne.get("/me/proxies").await;
        anne.post(&format!("/me/proxies/{proxy}/revoke"), &[])
            .await
            .assert_ok();
        // Revocation takes effect at once: Bo is sent back to his proxies page, once.
        let after = bo.get("/me/labs").await;
        assert!(after.url.ends_with("/me/proxies"), "{}", after.url);
        assert!(!after.contains("Open the record of Anne Jensen"));
        let own = bo.get("/me").await;
        assert!(own.contains("Bo Nielsen") && own.contains("your own record"));
        let refusals = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{}' AND outcome = 'denied'",
                anne_id.0
            ))
            .await;
        assert_eq!(refusals, 1, "one refusal is logged, not one per page");
        let log = anne.get("/me/access-log").await;
        assert!(
            log.contains("switch record"),
            "Anne sees that Bo opened her record as a proxy"
        );
        assert_eq!(
            bo.post("/me/switch", &[("patient", &anne_id.0.to_string())])
                .await
                .status,
            404
        );
    }
);

both_engines!(
    no_url_or_form_reaches_another_patients_data,
    |app: TestApp| async move {
        let bo_id = patient_id(&app, "Bo", "Nielsen").await;
        let karen = patient_id(&app, "Karen", "Poulsen").await;
        // Material of Bo's: an access event, a block, a proxy.
        clinician_reads(&app, "dr.hansen", bo_id, Category::LabResults)
            .await
            .ok();
        let mut bo = app.signed_in("bo").await;
        bo.get("/me/blocks").await;
        let mut conn = app.db.pool().acquire().await.unwrap();
        let hansen = accounts::by_username(&mut conn, "dr.hansen")
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        bo.post(
            "/me/blocks",
            &[("target", &format!("clinician:{}", hansen.id))],
        )
        .await
        .assert_ok();
        let bo_event = app
            .text(&format!(
                "SELECT id FROM audit_events WHERE patient_id = '{}' ORDER BY seq DESC",
                bo_id.0
            ))
            .await;
        let bo_block = app.text("SELECT id FROM blocks").await;
        let karen_proxy = app
            .text(&format!(
                "SELECT id FROM proxies WHERE patient_id = '{}'",
                karen.0
            ))
            .await;

        let mut anne = app.signed_in("anne").await;
        anne.get("/me").await;
        let events_before = app.count("SELECT COUNT(*) FROM audit_reviews").await;
        for (path, fields) in [
            (
                format!("/me/access-log/{bo_event}/report"),
                vec![("comment", "x")],
            ),
            (format!("/me/blocks/{bo_block}/lift"), vec![]),
            (format!("/me/proxies/{karen_proxy}/revoke"), vec![]),
            (
                "/me/switch".to_string(),
                vec![("patient", bo_id.0.to_string().leak() as &str)],
            ),
            (
                "/me/switch".to_string(),
                vec![("patient", karen.0.to_string().leak() as &str)],
            ),
        ] {
            let page = anne.post(&path, &fields).await;
            assert_eq!(
                page.status, 404,
                "{path} must not work for Anne: {}",
                page.body
            );
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_reviews").await,
            events_before
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM blocks WHERE lifted_at IS NULL")
                .await,
            1
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM proxies WHERE revoked_at IS NOT NULL")
                .await,
            0
        );
        let overview = anne.get("/me").await;
        assert!(overview.contains("Anne Jensen") && !overview.contains("Bo Nielsen"));
        assert!(!anne.get("/me/access-log").await.contains(&bo_event));

        // Expired or forged CSRF tokens change nothing.
        let forged = anne
            .post_raw(
                "/me/blocks",
                &[
                    ("csrf", "forged"),
                    ("target", &format!("clinician:{}", hansen.id)),
                ],
            )
            .await;
        assert_eq!(forged.status, 403);
        assert!(forged.contains("The form has expired"));
        assert_eq!(app.count("SELECT COUNT(*) FROM blocks").await, 1);
        // Other roles cannot open the patient pages at all.
        let mut doctor = app.signed_in("dr.hansen").await;
        assert_eq!(doctor.get("/me").await.status, 403);
    }
);

both_engines!(
    guardians_see_who_and_when_but_not_details_or_the_chain,
    |app: TestApp| async move {
        let emil = patient_id(&app, "Emil", "Jensen").await;
        clinician_reads(&app, "dr.hansen", emil, Category::LabResults)
            .await
            .ok();
        let mut anne = app.signed_in("anne").await;
        anne.get("/me/proxies").await;
        anne.post("/me/switch", &[("patient", &emil.0.to_string())])
            .await
            .assert_ok();
        let log = anne.get("/me/access-log").await;
        log.assert_ok();
        assert!(log.contains("read your test results") && !log.contains("chain.json"));
        assert_eq!(anne.get("/me/access-log/chain.json").await.status, 404);

        // Reporting the same access twice is answered, not silently dropped.
        let event = app
            .text(&format!(
                "SELECT id FROM audit_events WHERE patient_id = '{}' AND action = 'read lab_results'",
                emil.0
            ))
            .await;
        anne.post(
            &format!("/me/access-log/{event}/report"),
            &[("comment", "who?")],
        )
        .await
        .assert_ok();
        let again = anne
            .post(
                &format!("/me/access-log/{event}/report"),
                &[("comment", "who?")],
            )
            .await;
        assert_eq!(again.status, 409);
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'report unrecognised access'"
            )
            .await,
            1
        );
    }
);
