//! The whole health record beyond results, medicines and plans: diagnoses, allergies,
//! vaccinations, contacts, procedures and reports, as the patient, a guardian and a clinician
//! meet them in the pages and as FHIR clients read them. On both engines.

use crate::support;

use serde_json::Value;
use support::TestApp;

async fn anne_id(app: &TestApp) -> String {
    app.text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await
}

/// Audit events of this action about the patient.
async fn audited(app: &TestApp, patient: &str, action: &str, outcome: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{patient}' \
         AND action = '{action}' AND outcome = '{outcome}'"
    ))
    .await
}

both_engines!(
    patient_sees_allergies_and_diagnoses_first_and_every_vaccination,
    |app: TestApp| async move {
        let anne = anne_id(&app).await;
        let substance = app
            .text(&format!(
                "SELECT substance FROM allergies WHERE patient_id = '{anne}'"
            ))
            .await;
        let active = app
            .text(&format!("SELECT display FROM diagnoses WHERE patient_id = '{anne}' AND clinical_status = 'active' ORDER BY display LIMIT 1"))
            .await;
        let resolved = app
            .text(&format!("SELECT display FROM diagnoses WHERE patient_id = '{anne}' AND clinical_status = 'resolved'"))
            .await;
        let mut browser = app.signed_in("anne").await;
        let overview = browser.get("/me").await;
        overview.assert_ok();
        let headings = overview.select_text("main h2");
        let position = |h: &str| headings.iter().position(|x| x == h);
        assert!(
            position("Allergies") < position("Latest lab results")
                && position("Current diagnoses") < position("Latest lab results")
                && position("Vaccinations").is_some(),
            "what matters first: {headings:?}"
        );
        assert!(overview.contains(&substance) && overview.contains(&active));
        assert!(
            !overview.contains(&resolved),
            "a resolved diagnosis is not on the overview"
        );

        let diagnoses = browser.get("/me/diagnoses").await;
        diagnoses.assert_ok();
        let rows = diagnoses.table_rows("table");
        assert!(rows.iter().any(|r| r[0] == active && r[2] == "active"));
        assert!(
            rows.iter()
                .any(|r| r[0] == resolved && r[2] == "resolved" && !r[4].is_empty()),
            "the whole list, with when it ended: {rows:?}"
        );
        let allergies = browser.get("/me/allergies").await;
        allergies.assert_ok();
        let rows = allergies.table_rows("table");
        assert!(
            rows.iter()
                .any(|r| r[0].starts_with(&substance) && !r[2].is_empty()),
            "substance and reactions: {rows:?}"
        );
        let vaccinations = browser.get("/me/vaccinations").await;
        vaccinations.assert_ok();
        let rows = vaccinations.table_rows("table");
        let given = app
            .count(&format!(
                "SELECT COUNT(*) FROM vaccinations WHERE patient_id = '{anne}'"
            ))
            .await;
        assert_eq!(
            rows.len() as i64,
            given + 1,
            "a row per vaccination: {rows:?}"
        );
        assert!(
            rows.iter().skip(1).all(|r| r[3].starts_with("LOT")),
            "lot numbers"
        );

        assert!(
            position("Upcoming and recent contacts") < position("Latest lab results"),
            "{headings:?}"
        );
        let contacts = browser.get("/me/contacts").await;
        contacts.assert_ok();
        assert!(contacts
            .table_rows("table")
            .iter()
            .any(|r| r[1] == "Outpatient visit" && r[3] == "Lægehuset Nørrebro"));
        let reports = browser.get("/me/reports").await;
        reports.assert_ok();
        let conclusion = app
            .text(&format!(
                "SELECT conclusion FROM reports WHERE patient_id = '{anne}'"
            ))
            .await;
        assert!(reports.contains(&conclusion), "the report's conclusion");
        browser.get("/me/procedures").await.assert_ok();
        let imaging = browser.get("/me/imaging").await;
        imaging.assert_ok();
        assert!(
            imaging
                .table_rows("table")
                .iter()
                .any(|r| r[0].starts_with("Digital Radiography")
                    && r[3] == "Chest"
                    && r[6].starts_with("urn:oid:2.25.")),
            "modality, body site and the study's UID"
        );
        app.assert_audit_log_intact().await;
    }
);

both_engines!(
    guardian_sees_a_childs_vaccinations_but_not_diagnoses_or_allergies,
    |app: TestApp| async move {
        let emil = app
            .text("SELECT id FROM patients WHERE given_name = 'Emil' AND family_name = 'Jensen'")
            .await;
        let mut anne = app.signed_in("anne").await;
        let overview = anne.post("/me/switch", &[("patient", &emil)]).await;
        overview.assert_ok();
        let headings = overview.select_text("main h2");
        assert!(
            headings.contains(&"Vaccinations".to_string()),
            "{headings:?}"
        );
        assert!(
            !headings.contains(&"Allergies".to_string())
                && !headings.contains(&"Current diagnoses".to_string()),
            "not shown to guardians by default: {headings:?}"
        );
        assert!(overview.contains("DiTeKiPol"), "the childhood programme");
        let vaccinations = anne.get("/me/vaccinations").await;
        vaccinations.assert_ok();
        assert!(vaccinations.contains("MFR"));
        for path in [
            "/me/diagnoses",
            "/me/allergies",
            "/me/contacts",
            "/me/procedures",
            "/me/reports",
            "/me/imaging",
        ] {
            let refused = anne.get(path).await;
            assert_eq!(refused.status, 403, "{path}");
            assert!(refused.contains("Guardians do not see this part"));
        }
        assert!(audited(&app, &emil, "read vaccinations", "allowed").await >= 1);
        assert!(audited(&app, &emil, "read diagnoses", "denied").await >= 1);
    }
);

both_engines!(
    clinicians_open_them_through_the_gate_and_the_override,
    |app: TestApp| async move {
        let anne = anne_id(&app).await;
        let substance = app
            .text(&format!(
                "SELECT substance FROM allergies WHERE patient_id = '{anne}'"
            ))
            .await;
        let mut hansen = app.signed_in("dr.hansen").await;
        let overview = hansen.get(&format!("/clinician/patients/{anne}")).await;
        overview.assert_ok();
        assert!(
            overview.contains(&substance),
            "allergies on the clinician's overview"
        );
        // Imaging studies belong to the reports part of the record.
        for (kind, category) in [
            ("diagnoses", "diagnoses"),
            ("allergies", "allergies"),
            ("vaccinations", "vaccinations"),
            ("contacts", "contacts"),
            ("reports", "reports"),
            ("imaging", "reports"),
        ] {
            let page = hansen
                .get(&format!("/clinician/patients/{anne}/{kind}"))
                .await;
            page.assert_ok();
            assert!(page.table_rows("table").len() > 1, "{kind}");
            assert!(audited(&app, &anne, &format!("read {category}"), "allowed").await >= 1);
        }

        // No relationship: refused and audited, until an emergency override.
        let mut larsen = app.signed_in("dr.larsen").await;
        let refused = larsen
            .get(&format!("/clinician/patients/{anne}/allergies"))
            .await;
        assert_eq!(refused.status, 403);
        assert!(!refused.contains(&substance), "no data in a refusal");
        assert_eq!(audited(&app, &anne, "read allergies", "denied").await, 1);
        let granted = larsen
            .post(
                &format!("/clinician/patients/{anne}/override"),
                &[(
                    "reason",
                    "Unconscious in the emergency department, allergies unknown",
                )],
            )
            .await;
        granted.assert_ok();
        let allergies = larsen
            .get(&format!("/clinician/patients/{anne}/allergies"))
            .await;
        allergies.assert_ok();
        assert!(allergies.contains(&substance));
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}' \
                 AND action = 'read allergies' AND basis = 'emergency_override'"
            ))
            .await,
            1
        );
    }
);

both_engines!(
    fhir_reads_and_searches_each_new_type_under_the_policy,
    |app: TestApp| async move {
        let anne = anne_id(&app).await;
        let own = crate::fhir::token(&app, "anne-app", "patient/*.read", Some("anne")).await;
        let mut client = app.browser_with_bearer(&own);
        let engine = match app.engine {
            records_domain::Engine::Sqlite => "sqlite",
            records_domain::Engine::Postgres => "postgres",
        };
        for (kind, table) in [
            ("Condition", "diagnoses"),
            ("AllergyIntolerance", "allergies"),
            ("Immunization", "vaccinations"),
            ("Encounter", "contacts"),
            ("DiagnosticReport", "reports"),
            ("ImagingStudy", "imaging_studies"),
        ] {
            let search = client.get(&format!("/fhir/r4/{kind}?patient={anne}")).await;
            search.assert_ok();
            let bundle: Value = serde_json::from_str(&search.body).unwrap();
            crate::fhir::keep_for_validator(engine, &bundle);
            let stored = app
                .count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE patient_id = '{anne}'"
                ))
                .await;
            assert_eq!(bundle["total"], stored, "{kind}");
            let first = &bundle["entry"][0]["resource"];
            assert_eq!(first["resourceType"], kind);
            let id = first["id"].as_str().unwrap();
            let read = client.get(&format!("/fhir/r4/{kind}/{id}")).await;
            read.assert_ok();
            let resource: Value = serde_json::from_str(&read.body).unwrap();
            crate::fhir::keep_for_validator(engine, &resource);
            assert_eq!(&resource, first, "read gives what search gave");
        }
        let active = client
            .get(&format!("/fhir/r4/Condition?patient={anne}&status=active"))
            .await;
        let bundle: Value = serde_json::from_str(&active.body).unwrap();
        let statuses: Vec<&Value> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"]["clinicalStatus"]["coding"][0]["code"])
            .collect();
        assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == "active"));

        // Another patient's token sees nothing of Anne's, and the refusal is audited.
        let bo = crate::fhir::token(&app, "bo-app", "patient/*.read", Some("bo")).await;
        let mut other = app.browser_with_bearer(&bo);
        let refused = other
            .get(&format!("/fhir/r4/Immunization?patient={anne}"))
            .await;
        assert_eq!(refused.status, 403);
        assert!(audited(&app, &anne, "read vaccinations", "denied").await >= 1);
    }
);

both_engines!(
    one_timeline_of_the_whole_record_newest_first,
    |app: TestApp| async move {
        let mut anne = app.signed_in("anne").await;
        let page = anne.get("/me/timeline").await;
        page.assert_ok();
        let entries = page.select_text("ol.timeline > li");
        let kinds = [
            "Lab result",
            "Prescription",
            "Treatment plan",
            "Diagnosis",
            "Allergy",
            "Vaccination",
            "Outpatient visit",
            "Report",
        ];
        for kind in kinds {
            assert!(
                entries.iter().any(|e| e.contains(&format!("· {kind} ·"))),
                "{kind} on the timeline"
            );
        }
        let days: Vec<&str> = entries.iter().map(|e| &e[..10]).collect();
        let mut newest_first = days.clone();
        newest_first.sort_by(|a, b| b.cmp(a));
        assert_eq!(days, newest_first, "newest first");

        // A guardian's timeline holds only what guardians see.
        let emil = app
            .text("SELECT id FROM patients WHERE given_name = 'Emil' AND family_name = 'Jensen'")
            .await;
        anne.post("/me/switch", &[("patient", &emil)])
            .await
            .assert_ok();
        let child = anne.get("/me/timeline").await;
        child.assert_ok();
        let entries = child.select_text("ol.timeline > li");
        assert!(entries.iter().any(|e| e.contains("· Vaccination ·")));
        assert!(
            entries
                .iter()
                .all(|e| !e.contains("· Lab result ·") && !e.contains("· Diagnosis ·")),
            "{entries:?}"
        );
    }
);
