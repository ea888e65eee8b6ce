//! FHIR R4: tokens and scopes, reads and searches under the same policy and audit as the pages,
//! transaction Bundles in (all or nothing), and the Synthea samples imported for real.
//! Every resource the server returns is also written to $FHIR_OUT (when set) so that CI can
//! check them with an external FHIR R4 validator (tests/fhir_validate.py).

mod support;

use access_control::accounts::{self, NewUser};
use access_control::{tokens, Role};
use records_domain::store::patients;
use records_domain::Cpr;
use serde_json::{json, Value};
use support::TestApp;

struct Fhir {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
    engine: &'static str,
}

impl Fhir {
    fn new(app: &TestApp, token: Option<String>) -> Self {
        let engine = match app.engine {
            records_domain::Engine::Sqlite => "sqlite",
            records_domain::Engine::Postgres => "postgres",
        };
        Self {
            client: reqwest::Client::new(),
            base: format!("{}/fhir/r4", app.base),
            token,
            engine,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        keep_for_validator(self.engine, &body);
        (status, body, headers)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body, _) = self
            .send(self.client.get(format!("{}{path}", self.base)))
            .await;
        (status, body)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, body, _) = self
            .send(
                self.client
                    .post(format!("{}{path}", self.base))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string()),
            )
            .await;
        (status, body)
    }
}

fn keep_for_validator(engine: &str, body: &Value) {
    let (Ok(dir), Some(kind)) = (std::env::var("FHIR_OUT"), body["resourceType"].as_str()) else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let _ = std::fs::create_dir_all(dir);
    let name = format!("{engine}-{kind}-{}.json", uuid::Uuid::new_v4());
    let _ = std::fs::write(dir.join(name), body.to_string());
}

async fn token(app: &TestApp, name: &str, scopes: &str, username: Option<&str>) -> String {
    let mut tx = app.db.begin_write().await.unwrap();
    let user = match username {
        Some(u) => Some(accounts::by_username(&mut tx, u).await.unwrap().unwrap().id),
        None => None,
    };
    let secret = tokens::create(&mut tx, name, scopes, user).await.unwrap();
    tx.commit().await.unwrap();
    secret
}

async fn patient_id(app: &TestApp, username: &str) -> String {
    let mut conn = app.db.pool().acquire().await.unwrap();
    accounts::by_username(&mut conn, username)
        .await
        .unwrap()
        .unwrap()
        .patient_id
        .unwrap()
        .0
        .to_string()
}

both_engines!(
    metadata_is_a_truthful_capability_statement,
    |app: TestApp| async move {
        let (status, body) = Fhir::new(&app, None).get("/metadata").await;
        assert_eq!(status, 200);
        assert_eq!(body["resourceType"], "CapabilityStatement");
        assert_eq!(body["fhirVersion"], "4.0.1");
        let kinds: Vec<&str> = body["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Patient",
                "Observation",
                "MedicationRequest",
                "CarePlan",
                "AuditEvent"
            ]
        );
    }
);

both_engines!(
    no_token_or_wrong_scope_is_refused_and_audited,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let (status, body) = Fhir::new(&app, None)
            .get(&format!("/Observation?patient={anne}"))
            .await;
        assert_eq!(status, 401);
        assert_eq!(body["resourceType"], "OperationOutcome");
        let (status, _) = Fhir::new(&app, Some("pp_not-a-token".into()))
            .get(&format!("/Observation?patient={anne}"))
            .await;
        assert_eq!(status, 401);
        let only_plans = token(&app, "plans-only", "patient/CarePlan.read", Some("anne")).await;
        let (status, body) = Fhir::new(&app, Some(only_plans))
            .get(&format!("/Observation?patient={anne}"))
            .await;
        assert_eq!(status, 403);
        assert!(body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("scopes"));
        let mut conn = app.db.pool().acquire().await.unwrap();
        let filter = access_control::audit::query::Filter {
            action: Some("fhir authenticate".into()),
            ..Default::default()
        };
        // Calls without a valid token are recorded once a minute per address.
        assert!(
            access_control::audit::query::count(&mut conn, &filter)
                .await
                .unwrap()
                >= 1
        );
        let filter = access_control::audit::query::Filter {
            action: Some("fhir scope check".into()),
            outcome: Some("denied".into()),
            ..Default::default()
        };
        assert_eq!(
            access_control::audit::query::count(&mut conn, &filter)
                .await
                .unwrap(),
            1
        );
    }
);

both_engines!(
    patient_token_reads_own_results_with_search_and_paging,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let fhir = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/*.read", Some("anne")).await),
        );
        let (status, bundle) = fhir
            .get("/Observation?code=http://loinc.org|4548-4&_sort=date&_count=3")
            .await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(bundle["type"], "searchset");
        let total = bundle["total"].as_i64().unwrap();
        assert!(total >= 4, "Anne has several HbA1c results");
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 3);
        let dates: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap())
            .collect();
        assert!(
            dates.windows(2).all(|w| w[0] <= w[1]),
            "oldest first with _sort=date"
        );
        let next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string();
        let (_, page2) = fhir.get(next.trim_start_matches("/fhir/r4")).await;
        assert_eq!(
            page2["entry"].as_array().unwrap().len() as i64,
            (total - 3).min(3)
        );
        let first_id = entries[0]["resource"]["id"].as_str().unwrap();
        let (status, one) = fhir.get(&format!("/Observation/{first_id}")).await;
        assert_eq!(
            (status, one["subject"]["reference"].as_str().unwrap()),
            (200, format!("Patient/{anne}").as_str())
        );
        let (status, me) = fhir.get(&format!("/Patient/{anne}")).await;
        assert_eq!(status, 200);
        assert_eq!(me["name"][0]["family"], "Jensen");
        let (status, meds) = fhir.get("/MedicationRequest?status=active").await;
        assert_eq!(status, 200);
        assert!(meds["total"].as_i64().unwrap() >= 1);
        assert!(meds["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["status"] == "active"));
        let (status, plans) = fhir.get("/CarePlan").await;
        assert_eq!(
            (status, plans["resourceType"].as_str()),
            (200, Some("Bundle"))
        );
        let (status, _) = fhir
            .get("/Observation?date=ge2024-01-01&date=lt2025-01-01&category=laboratory")
            .await;
        assert_eq!(status, 200);
        let (status, outcome) = fhir.get("/Observation?colour=blue").await;
        assert_eq!(status, 400);
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("colour"));
    }
);

both_engines!(
    the_end_of_time_is_a_clear_error_not_a_crash,
    |app: TestApp| async move {
        // Found by the fhir_search fuzz target: this used to overflow and panic.
        let fhir = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/*.read", Some("anne")).await),
        );
        let (status, body) = fhir.get("/Observation?date=9999-12-31T23:59:59Z").await;
        assert_eq!(status, 400);
        assert_eq!(body["resourceType"], "OperationOutcome");
        let (status, _) = fhir.get("/Observation?_count=1").await;
        assert_eq!(status, 200, "the server is still serving");
    }
);

both_engines!(
    patient_token_cannot_read_anyone_else,
    |app: TestApp| async move {
        let bo = patient_id(&app, "bo").await;
        let fhir = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/*.read", Some("anne")).await),
        );
        let (status, body) = fhir.get(&format!("/Observation?patient={bo}")).await;
        assert_eq!(status, 403);
        assert!(!body.to_string().contains("valueQuantity"));
        let (status, _) = fhir.get(&format!("/Patient/{bo}")).await;
        assert_eq!(status, 403);
        let (status, _) = fhir
            .get("/Patient/00000000-0000-0000-0000-000000000000")
            .await;
        assert_eq!(status, 404);
    }
);

both_engines!(
    clinician_tokens_follow_the_access_policy,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let hansen = Fhir::new(
            &app,
            Some(token(&app, "hansen-ehr", "user/*.read", Some("dr.hansen")).await),
        );
        let (status, bundle) = hansen
            .get(&format!("/Observation?patient=Patient/{anne}&_count=200"))
            .await;
        assert_eq!(status, 200);
        let patient_token = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/*.read", Some("anne")).await),
        );
        let (_, own) = patient_token.get("/Observation?_count=200").await;
        assert_eq!(
            bundle["total"].as_i64().unwrap(),
            own["total"].as_i64().unwrap() + 1,
            "the clinician also sees the held-back result"
        );
        let larsen = Fhir::new(
            &app,
            Some(token(&app, "larsen-ehr", "user/*.read", Some("dr.larsen")).await),
        );
        let (status, denied) = larsen.get(&format!("/Observation?patient={anne}")).await;
        assert_eq!(status, 403);
        assert!(denied["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("not listed"));
        let (status, found) = hansen
            .get("/Patient?identifier=urn:oid:1.2.208.176.1.2|")
            .await;
        assert_eq!(status, 400, "{found}");
        let cpr = {
            let mut conn = app.db.pool().acquire().await.unwrap();
            patients::by_id(
                &mut conn,
                records_domain::model::PatientId(anne.parse().unwrap()),
            )
            .await
            .unwrap()
            .unwrap()
            .cpr
            .digits()
            .to_string()
        };
        let (status, found) = hansen
            .get(&format!(
                "/Patient?identifier=urn:oid:1.2.208.176.1.2|{cpr}"
            ))
            .await;
        assert_eq!((status, found["total"].as_i64()), (200, Some(1)));
        let (_, hidden) = larsen
            .get(&format!(
                "/Patient?identifier=urn:oid:1.2.208.176.1.2|{cpr}"
            ))
            .await;
        assert_eq!(
            hidden["total"].as_i64(),
            Some(0),
            "a patient outside the policy is not even shown to exist"
        );
        let mut conn = app.db.pool().acquire().await.unwrap();
        let log = access_control::audit::query::accesses_to(
            &mut conn,
            records_domain::model::PatientId(anne.parse().unwrap()),
            uuid::Uuid::nil(),
            100,
        )
        .await
        .unwrap();
        assert!(log.iter().any(|e| e.actor_name == "Dr. Mette Hansen"
            && e.basis == "gp_listing"
            && e.outcome == "allowed"));
        assert!(log
            .iter()
            .any(|e| e.actor_name == "Dr. Jens Larsen" && e.outcome == "denied"));
    }
);

both_engines!(
    only_auditors_search_audit_events,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let auditor = Fhir::new(
            &app,
            Some(token(&app, "audit-tool", "user/AuditEvent.read", Some("auditor")).await),
        );
        let hansen = Fhir::new(
            &app,
            Some(token(&app, "hansen-ehr", "user/*.read", Some("dr.hansen")).await),
        );
        hansen.get(&format!("/Observation?patient={anne}")).await;
        let (status, bundle) = auditor
            .get(&format!("/AuditEvent?patient={anne}&date=ge2020"))
            .await;
        assert_eq!(status, 200, "{bundle}");
        assert!(bundle["total"].as_i64().unwrap() >= 1);
        assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "AuditEvent");
        let (status, _) = hansen.get("/AuditEvent").await;
        assert_eq!(status, 403);
    }
);

fn lab_bundle(cpr: &str, observation_value: Value) -> Value {
    json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111", "resource": {
                "resourceType": "Patient", "id": "lab-p1", "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
                "name": [{"family": "Lab", "given": ["Test"]}], "gender": "female", "birthDate": "1990-02-03"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222", "resource": {
                "resourceType": "Observation", "id": "lab-o1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Haemoglobin"}]},
                "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                "effectiveDateTime": "2026-11-01T08:00:00+00:00", "valueQuantity": observation_value},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    })
}

both_engines!(
    transaction_bundles_are_all_or_nothing,
    |app: TestApp| async move {
        let lab = Fhir::new(
            &app,
            Some(
                token(
                    &app,
                    "lab1",
                    "system/Patient.write system/Observation.write",
                    None,
                )
                .await,
            ),
        );
        let count = || async {
            let mut conn = app.db.pool().acquire().await.unwrap();
            patients::count(&mut conn).await.unwrap()
        };
        let before = count().await;
        let (status, outcome) = lab
            .post("", &lab_bundle("0302904000", json!({"unit": "mmol/L"})))
            .await;
        assert_eq!(status, 422, "{outcome}");
        assert!(outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Bundle.entry[1]"));
        assert_eq!(
            count().await,
            before,
            "the patient of a failed bundle was not written"
        );
        let (status, reply) = lab
            .post(
                "",
                &lab_bundle("0302904000", json!({"value": 8.1, "unit": "mmol/L"})),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["type"], "transaction-response");
        assert_eq!(count().await, before + 1);
        let (status, _) = lab
            .post(
                "",
                &lab_bundle("0302904000", json!({"value": 8.1, "unit": "mmol/L"})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            count().await,
            before + 1,
            "re-sending the same bundle changes nothing"
        );
        let reader = Fhir::new(
            &app,
            Some(token(&app, "reader", "patient/*.read", Some("anne")).await),
        );
        let (status, _) = reader
            .post("", &lab_bundle("0302904000", json!({"value": 1})))
            .await;
        assert_eq!(status, 403, "read tokens cannot write");
        let (status, _) = lab
            .post(
                "",
                &json!({"resourceType": "Bundle", "type": "document", "entry": []}),
            )
            .await;
        assert_eq!(status, 422);
    }
);

both_engines!(
    malformed_and_oversized_bodies_are_refused,
    |app: TestApp| async move {
        let lab = Fhir::new(
            &app,
            Some(token(&app, "lab1", "system/*.write", None).await),
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let response = lab
            .client
            .post(lab.base.to_string())
            .bearer_auth(lab.token.clone().unwrap())
            .body(deep)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let huge = vec![b' '; 40 * 1024 * 1024];
        let response = lab
            .client
            .post(lab.base.to_string())
            .bearer_auth(lab.token.clone().unwrap())
            .body(huge)
            .send()
            .await;
        assert!(
            response.map(|r| r.status().as_u16() == 413).unwrap_or(true),
            "oversized body refused"
        );
        let (status, _) = lab.post("", &json!("not a bundle")).await;
        assert_eq!(status, 422);
    }
);

fn sample_files() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/fhir");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("samples/fhir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn count_in_files(files: &[std::path::PathBuf]) -> std::collections::BTreeMap<String, u64> {
    let mut counts = std::collections::BTreeMap::new();
    for f in files {
        let bundle: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        for e in bundle["entry"].as_array().unwrap() {
            *counts
                .entry(e["resource"]["resourceType"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
    }
    counts
}

both_engines!(
    synthea_samples_import_completely_and_idempotently,
    |app: TestApp| async move {
        let files = sample_files();
        assert_eq!(files.len(), 5);
        let expected = count_in_files(&files);
        let report = portal::import::import_files(&app.db, "urn:synthea", &files, false).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        for kind in ["Patient", "Observation", "MedicationRequest", "CarePlan"] {
            assert_eq!(
                report.summary.inserted.get(kind),
                expected.get(kind),
                "{kind}"
            );
        }
        let skipped: u64 = report
            .summary
            .skipped
            .values()
            .flat_map(|r| r.values())
            .sum();
        let stored: u64 = ["Patient", "Observation", "MedicationRequest", "CarePlan"]
            .iter()
            .map(|k| expected[*k])
            .sum();
        assert_eq!(
            skipped + stored,
            expected.values().sum::<u64>(),
            "every resource is either stored or reported as skipped"
        );
        println!("import rate: {:.0} resources/s", report.rate());

        let again = portal::import::import_files(&app.db, "urn:synthea", &files, false).await;
        assert_eq!(again.summary.written(), 0, "re-import is a no-op");
        assert_eq!(ingest_total(&again.summary.unchanged), stored);

        // An imported patient gets a login and sees their record in the pages.
        let lupe = {
            let mut conn = app.db.pool().acquire().await.unwrap();
            patients::search_by_name(&mut conn, "Lupe", None, 5)
                .await
                .unwrap()
                .into_iter()
                .next()
                .expect("Lupe Little imported")
        };
        assert!(Cpr::parse(lupe.cpr.digits()).is_ok());
        assert_eq!(
            lupe.original_identifier.as_deref(),
            Some("https://github.com/synthetichealth/synthea|f8a42e66-8c03-4ee6-85e3-3817c2942de1")
        );
        let hash = accounts::hash_password("lupe-imported-2026").unwrap();
        let mut tx = app.db.begin_write().await.unwrap();
        let new = NewUser {
            username: "lupe".into(),
            display_name: lupe.full_name(),
            role: Role::Patient,
            patient_id: Some(lupe.id),
            clinic_id: None,
            totp_secret: None,
            must_change_password: false,
        };
        accounts::create(&mut tx, &new, &hash).await.unwrap();
        tx.commit().await.unwrap();
        let mut browser = app.browser();
        let page = browser.login_with("lupe", "lupe-imported-2026").await;
        page.assert_ok();
        assert!(page.contains("Lupe Little"));
        assert!(
            page.contains("Hemoglobin A1c") || page.contains("Body Height"),
            "imported results show"
        );
        assert!(
            page.contains("Diabetes self management plan"),
            "imported care plan shows"
        );

        let mut conn = app.db.pool().acquire().await.unwrap();
        let verified = access_control::audit::verify::verify_all(&mut conn)
            .await
            .unwrap();
        assert!(verified.is_intact(), "{:?}", verified.broken);
    }
);

fn ingest_total(map: &std::collections::BTreeMap<String, u64>) -> u64 {
    ["Patient", "Observation", "MedicationRequest", "CarePlan"]
        .iter()
        .map(|k| map.get(*k).copied().unwrap_or(0))
        .sum()
}
