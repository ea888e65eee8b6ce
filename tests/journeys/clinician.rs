//! The GP's journeys over HTTP: lookup by CPR or name, relationship-checked record pages, the
//! emergency override, releasing results, prescribing and plans with optimistic concurrency.

use crate::support;

use support::{Browser, TestApp};

struct Anne {
    id: String,
    cpr: String,
}

async fn anne(app: &TestApp) -> Anne {
    Anne {
        id: app.text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
        )
        .await,
        cpr: app.text("SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
        )
        .await,
    }
}

async fn lookup(doctor: &mut Browser, fields: &[(&str, &str)]) -> support::Page {
    doctor.get("/clinician").await;
    doctor.post("/clinician/lookup", fields).await
}

both_engines!(
    lookup_by_cpr_or_name_shows_only_what_may_be_known,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let mut hansen = app.signed_in("dr.hansen").await;
        let dashed = format!("{}-{}", &anne.cpr[..6], &anne.cpr[6..]);
        for cpr in [anne.cpr.as_str(), dashed.as_str()] {
            let found = lookup(&mut hansen, &[("cpr", cpr)]).await;
            found.assert_ok();
            assert!(
                found.contains(&format!("/clinician/patients/{}", anne.id))
                    && found.contains("Anne Jensen")
            );
            assert!(found.contains(&dashed), "listed patients are shown fully");
        }
        let bad = lookup(&mut hansen, &[("cpr", "3213991234")]).await;
        assert!(
            bad.contains("role=\"alert\""),
            "malformed CPR gets a clear message: {}",
            bad.body
        );
        let by_name = lookup(
            &mut hansen,
            &[("name", "Anne Jensen"), ("birth_date", "1980-04-12")],
        )
        .await;
        let birth = app.text("SELECT birth_date FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
        )
        .await;
        let by_name = if by_name.contains("Anne Jensen") {
            by_name
        } else {
            lookup(&mut hansen, &[("name", "Anne"), ("birth_date", &birth)]).await
        };
        assert!(by_name.contains("Anne Jensen"));
        assert!(lookup(&mut hansen, &[("name", "A")])
            .await
            .contains("role=\"alert\""));

        // Dr. Larsen has no relationship with Anne: name and birth year only, and the override offer.
        let mut larsen = app.signed_in("dr.larsen").await;
        let found = lookup(&mut larsen, &[("cpr", &anne.cpr)]).await;
        assert!(found.contains("Anne Jensen") && found.contains("Emergency access"));
        assert!(
            !found.contains(&dashed),
            "no CPR number without a relationship"
        );
        assert!(!found.contains(&format!("href=\"/clinician/patients/{}\"", anne.id)));
        // The national ID never travels in a URL.
        assert!(!found.url.contains(&anne.cpr));
        assert!(
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'lookup' AND patient_id = '{}'",
                anne.id
            ))
            .await
                >= 3
        );
    }
);

both_engines!(
    listed_patient_record_and_releasing_held_back_results,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let mut hansen = app.signed_in("dr.hansen").await;
        let base = format!("/clinician/patients/{}", anne.id);
        let overview = hansen.get(&base).await;
        overview.assert_ok();
        assert!(overview.contains("patient is listed with the clinician"));
        let labs = hansen.get(&format!("{base}/labs")).await;
        labs.assert_ok();
        assert!(
            labs.table_rows("table")
                .iter()
                .any(|row| row.iter().any(|cell| cell.starts_with("Held back"))),
            "clinicians see held-back results, marked in their row"
        );
        hansen
            .get(&format!("{base}/prescriptions"))
            .await
            .assert_ok();
        hansen.get(&format!("{base}/plans")).await.assert_ok();
        let history = hansen
            .get(&labs.link_starting(&format!("{base}/labs/")).unwrap())
            .await;
        assert!(history.contains("<svg"));
        let audited = app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{}' AND basis = 'gp_listing' AND outcome = 'allowed'", anne.id)).await;
        assert_eq!(audited, 5, "one audit event per view, with its basis");

        let held = app
            .text(&format!(
                "SELECT id FROM lab_results WHERE patient_id = '{}' AND released_at > '2090'",
                anne.id
            ))
            .await;
        let mut patient = app.signed_in("anne").await;
        assert!(patient
            .get("/me/labs")
            .await
            .contains("Some results may be pending"));
        hansen
            .post(&format!("{base}/results/{held}/release"), &[])
            .await
            .assert_ok();
        assert!(!patient
            .get("/me/labs")
            .await
            .contains("Some results may be pending"));
        assert_eq!(
            hansen
                .post(&format!("{base}/results/{held}/release"), &[])
                .await
                .status,
            404,
            "already released"
        );
    }
);

both_engines!(
    no_relationship_gets_nothing_but_the_override_offer,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let mut larsen = app.signed_in("dr.larsen").await;
        let base = format!("/clinician/patients/{}", anne.id);
        for path in ["", "/labs", "/prescriptions", "/plans", "/plans/new"] {
            let page = larsen.get(&format!("{base}{path}")).await;
            assert_eq!(page.status, 403, "{path}");
            assert_eq!(
                page.select_text("main h1"),
                ["No access to this record"],
                "{path}"
            );
            assert_eq!(
                page.select_text("main a.button"),
                ["Emergency access"],
                "{path}"
            );
            assert!(!page.has("table") && !page.contains("HbA1c"), "{path}");
        }
        let denied = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{}' AND outcome = 'denied'",
                anne.id
            ))
            .await;
        assert_eq!(denied, 5, "every denial is audited");
        let prescribed = larsen
            .post(
                &format!("{base}/prescriptions"),
                &[
                    ("medication_code", "C10AA05"),
                    ("medication_name", "Atorvastatin 20 mg"),
                    ("dosage_text", "1 tablet daily"),
                ],
            )
            .await;
        assert_eq!(prescribed.status, 403);

        // Too short a reason is refused and the text kept.
        let lookups = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'lookup' AND patient_id = '{}'",
                anne.id
            ))
            .await;
        larsen.get(&format!("{base}/override")).await.assert_ok();
        let after = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'lookup' AND patient_id = '{}'",
                anne.id
            ))
            .await;
        assert_eq!(
            after,
            lookups + 1,
            "naming the patient on the form is audited"
        );
        let short = larsen
            .post(&format!("{base}/override"), &[("reason", "emergency")])
            .await;
        assert_eq!(short.status, 400);
        assert!(
            short.contains("at least 20 characters") && short.contains(">emergency</textarea>")
        );
        let opened = larsen
            .post(
                &format!("{base}/override"),
                &[(
                    "reason",
                    "Patient unconscious in A&E, need medication history",
                )],
            )
            .await;
        opened.assert_ok();
        assert!(
            opened.contains("Emergency override: 1 h 59 min left")
                || opened.contains("Emergency override: 2 h 0 min left"),
            "{}",
            opened.body
        );
        assert!(opened.contains("record-banner emergency"));
        assert!(
            larsen
                .get(&format!("{base}/labs"))
                .await
                .contains("Emergency override"),
            "banner on every page"
        );
        assert_eq!(app.count(&format!("SELECT COUNT(*) FROM audit_reviews WHERE patient_id = '{}' AND kind = 'denial_then_override'", anne.id)).await, 1);

        // An expired override grants nothing.
        sqlx::query("UPDATE emergency_accesses SET expires_at = '2020-01-01T00:00:00.000000Z'")
            .execute(app.db.pool())
            .await
            .unwrap();
        assert_eq!(larsen.get(&base).await.status, 403);
    }
);

both_engines!(
    an_override_reason_must_be_words_not_filler,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let mut larsen = app.signed_in("dr.larsen").await;
        let base = format!("/clinician/patients/{}", anne.id);
        larsen.get(&format!("{base}/override")).await.assert_ok();
        for filler in [
            "aaaaaaaaaaaaaaaaaaaa",
            "test test test test test",
            "aa bb cc dd ee ff gg hh",
        ] {
            let refused = larsen
                .post(&format!("{base}/override"), &[("reason", filler)])
                .await;
            assert_eq!(refused.status, 400, "{filler}: {}", refused.body);
            assert!(
                refused.contains("role=\"alert\">Describe the emergency in at least 20 characters and at least three different words"),
                "the rule is shown: {}",
                refused.body
            );
            assert!(
                refused.contains(&format!(">{filler}</textarea>")),
                "the text is kept"
            );
            assert_eq!(larsen.get(&base).await.status, 403, "no access: {filler}");
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM emergency_accesses").await,
            0
        );
        larsen
            .post(
                &format!("{base}/override"),
                &[("reason", "Unconscious in A&E, need medication list")],
            )
            .await
            .assert_ok();
        larsen.get(&base).await.assert_ok();
    }
);

both_engines!(a_block_holds_until_an_override, |app: TestApp| async move {
    let anne = anne(&app).await;
    let hansen_id = app
        .text("SELECT id FROM users WHERE username = 'dr.hansen'")
        .await;
    let mut patient = app.signed_in("anne").await;
    patient.get("/me/blocks").await;
    patient
        .post(
            "/me/blocks",
            &[("target", &format!("clinician:{hansen_id}"))],
        )
        .await
        .assert_ok();
    let mut hansen = app.signed_in("dr.hansen").await;
    let base = format!("/clinician/patients/{}", anne.id);
    let refused = hansen.get(&base).await;
    assert_eq!(refused.status, 403);
    let alert = refused.select_text("main [role=alert]");
    assert!(
        alert.len() == 1 && alert[0].contains("The patient has blocked your access"),
        "{alert:?}"
    );
    assert_eq!(refused.select_text("main a.button"), ["Emergency access"]);
    hansen.get(&format!("{base}/override")).await;
    hansen
        .post(
            &format!("{base}/override"),
            &[("reason", "Acute chest pain, need current medication list")],
        )
        .await
        .assert_ok();
    hansen
        .get(&format!("{base}/prescriptions"))
        .await
        .assert_ok();
    let log = patient.get("/me/access-log").await;
    let overrides = log.select_text("ol.access-log > li.emergency");
    assert!(
        overrides.iter().any(|e| e.contains("Dr. Mette Hansen")
            && e.contains("Acute chest pain, need current medication list")),
        "the override is shown to the patient with its reason: {overrides:?}"
    );
});

both_engines!(
    care_relationship_with_an_end_date,
    |app: TestApp| async move {
        let karen = app
            .text("SELECT id FROM patients WHERE given_name = 'Karen' AND family_name = 'Poulsen'")
            .await;
        let mut larsen = app.signed_in("dr.larsen").await;
        let base = format!("/clinician/patients/{karen}");
        assert!(larsen
            .get(&base)
            .await
            .assert_ok()
            .contains("care relationship"));
        sqlx::query("UPDATE care_relationships SET valid_until = '2021-01-01T00:00:00.000000Z'")
            .execute(app.db.pool())
            .await
            .unwrap();
        assert_eq!(
            larsen.get(&base).await.status,
            403,
            "an ended relationship grants nothing"
        );
    }
);

both_engines!(
    prescribe_and_stop_with_clear_errors,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let mut hansen = app.signed_in("dr.hansen").await;
        let base = format!("/clinician/patients/{}/prescriptions", anne.id);
        hansen.get(&base).await;
        let bad = hansen
            .post(
                &base,
                &[
                    ("medication_code", "C10"),
                    ("medication_name", "Atorvastatin 40 mg"),
                    ("dosage_text", "1 tablet at night"),
                ],
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(
            bad.contains("The ATC code must have 7 characters")
                && bad.contains("value=\"Atorvastatin 40 mg\"")
        );
        let before = app.count("SELECT COUNT(*) FROM prescriptions").await;
        let ok = hansen
            .post(
                &base,
                &[
                    ("medication_code", "c10aa05"),
                    ("medication_name", "Atorvastatin 40 mg"),
                    ("dosage_text", "1 tablet at night"),
                    ("valid_from", ""),
                    ("valid_until", ""),
                ],
            )
            .await;
        ok.assert_ok();
        assert_eq!(
            app.count("SELECT COUNT(*) FROM prescriptions").await,
            before + 1
        );
        let mut patient = app.signed_in("anne").await;
        let seen = patient.get("/me/prescriptions").await;
        assert!(seen.contains("Atorvastatin 40 mg") && seen.contains("C10AA05"));

        let id = app
            .text("SELECT id FROM prescriptions WHERE medication_name = 'Atorvastatin 40 mg'")
            .await;
        let named = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'write prescriptions' AND resource_id = '{id}'"
            ))
            .await;
        assert_eq!(named, 1, "the prescribing event names the new prescription");
        hansen.get(&base).await;
        let stale = hansen
            .post(
                &format!("{base}/{id}/stop"),
                &[("reason", "Muscle pain"), ("version", "7")],
            )
            .await;
        assert_eq!(stale.status, 409);
        assert!(
            stale.contains("Muscle pain"),
            "the conflict page keeps the reason"
        );
        hansen
            .post(
                &format!("{base}/{id}/stop"),
                &[("reason", "Muscle pain"), ("version", "1")],
            )
            .await
            .assert_ok();
        assert_eq!(
            app.text(&format!(
                "SELECT status FROM prescriptions WHERE id = '{id}'"
            ))
            .await,
            "stopped"
        );
        let writes = app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{}' AND action = 'write prescriptions' AND outcome = 'allowed' AND actor_role = 'clinician'", anne.id)).await;
        assert_eq!(writes, 2, "each committed write is audited");
    }
);

both_engines!(
    concurrent_plan_edits_one_winner_one_conflict,
    |app: TestApp| async move {
        let anne = anne(&app).await;
        let base = format!("/clinician/patients/{}/plans", anne.id);
        let mut first = app.signed_in("dr.hansen").await;
        first.get(&format!("{base}/new")).await.assert_ok();
        let created = first
            .post(
                &base,
                &[
                    ("title", "Blood pressure control"),
                    ("status", "active"),
                    ("goals", "BP below 135/85 | 135/85 | active"),
                    ("activities", "Home BP measurements | in-progress"),
                ],
            )
            .await;
        created.assert_ok();
        assert!(
            created.contains("Blood pressure control") && created.contains("Home BP measurements")
        );
        let plan = app
            .text("SELECT id FROM treatment_plans WHERE title = 'Blood pressure control'")
            .await;
        let edit = format!("{base}/{plan}");
        let mut second = app.signed_in("dr.hansen").await;
        first.get(&edit).await.assert_ok();
        second.get(&edit).await.assert_ok();
        let fields = |title: &'static str| {
            vec![
                ("title", title),
                ("status", "active"),
                ("version", "1"),
                ("goals", "BP below 135/85 | 135/85 | active"),
            ]
        };
        let (fields_a, fields_b) = (
            fields("Blood pressure control, revised by A"),
            fields("Blood pressure control, revised by B"),
        );
        let (a, b) = tokio::join!(first.post(&edit, &fields_a), second.post(&edit, &fields_b));
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "one winner, one conflict");
        let loser = if a.status == 409 { &a } else { &b };
        assert!(loser.contains("Changed by someone else"));
        let kept = if a.status == 409 {
            "revised by A"
        } else {
            "revised by B"
        };
        assert!(loser.contains(kept), "the loser's text is kept in the form");
        assert!(loser.contains("name=\"version\" value=\"2\""));
        assert_eq!(
            app.text(&format!(
                "SELECT CAST(version AS TEXT) FROM treatment_plans WHERE id = '{plan}'"
            ))
            .await,
            "2"
        );
        let bad = first
            .post(
                &edit,
                &[("title", "x"), ("status", "nonsense"), ("version", "2")],
            )
            .await;
        assert_eq!(bad.status, 400);
        assert!(bad.contains("Choose a status"));
    }
);
