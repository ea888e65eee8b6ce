//! FHIR R4: tokens and scopes, reads and searches under the same policy and audit as the pages,
//! transaction Bundles in (all or nothing), and the Synthea samples imported for real.
//! Every resource the server returns is also written to $FHIR_OUT (when set) so that CI can
//! check them with an external FHIR R4 validator (tests/fhir_validate.py).

use crate::support;

use access_control::accounts::{self, NewUser};
use access_control::{tokens, Role};
use records_domain::store::patients;
use records_domain::Cpr;
use serde_json::{json, Value};
use support::TestApp;

struct Fhir {
    client: support::Browser,
    engine: &'static str,
}

impl Fhir {
    fn new(app: &TestApp, token: Option<String>) -> Self {
        let engine = match app.engine {
            records_domain::Engine::Sqlite => "sqlite",
            records_domain::Engine::Postgres => "postgres",
        };
        let client = match token {
            Some(token) => app.browser_with_bearer(&token),
            None => app.browser_without_redirects(),
        };
        Self { client, engine }
    }

    /// The answer's status and JSON body (null when it has none), kept for the validator.
    fn answer(&self, page: support::Page) -> (u16, Value) {
        let body: Value = serde_json::from_str(&page.body).unwrap_or(Value::Null);
        keep_for_validator(self.engine, &body);
        (page.status, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let page = self.client.clone().get(&format!("/fhir/r4{path}")).await;
        self.answer(page)
    }

    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let page = self
            .client
            .clone()
            .put_json(&format!("/fhir/r4{path}"), &body.to_string())
            .await;
        self.answer(page)
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_text(path, &body.to_string()).await
    }

    async fn post_text(&self, path: &str, body: &str) -> (u16, Value) {
        let page = self
            .client
            .clone()
            .post_json(&format!("/fhir/r4{path}"), body)
            .await;
        self.answer(page)
    }
}

/// Kept where `FHIR_OUT` says, for `tests/fhir_validate.py` (CI validates every resource).
pub(crate) fn keep_for_validator(engine: &str, body: &Value) {
    let (Ok(dir), Some(kind)) = (std::env::var("FHIR_OUT"), body["resourceType"].as_str()) else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let _ = std::fs::create_dir_all(dir);
    let name = format!("{engine}-{kind}-{}.json", uuid::Uuid::new_v4());
    let _ = std::fs::write(dir.join(name), body.to_string());
}

pub(crate) async fn token(
    app: &TestApp,
    name: &str,
    scopes: &str,
    username: Option<&str>,
) -> String {
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
                "Condition",
                "AllergyIntolerance",
                "Immunization",
                "Encounter",
                "Procedure",
                "DiagnosticReport",
                "ImagingStudy",
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
        assert!(next.starts_with("http"), "links are absolute: {next}");
        let (_, page2) = fhir.get(next.split_once("/fhir/r4").unwrap().1).await;
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
        assert_eq!(lab.post_text("", &deep).await.0, 400);
        let huge = " ".repeat(40 * 1024 * 1024);
        assert_eq!(
            lab.post_text("", &huge).await.0,
            413,
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
        for kind in KEPT {
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
        let stored: u64 = KEPT.iter().map(|k| expected[*k]).sum();
        // Only administrative resources are left out: billing, and the practitioners and
        // organisations whose names the clinical resources take.
        let administrative = [
            "Claim",
            "ExplanationOfBenefit",
            "Practitioner",
            "Organization",
            "Goal",
        ];
        for kind in report.summary.skipped.keys() {
            assert!(
                administrative.contains(&kind.as_str()),
                "{kind} is skipped: {:?}",
                report.summary.skipped
            );
        }
        // Who recorded a diagnosis, gave a vaccination, performed a test or wrote a plan is
        // named in the Bundle (often only through the encounter), not left unknown.
        for (table, column) in [
            ("diagnoses", "recorder"),
            ("vaccinations", "performer"),
            ("contacts", "place"),
            ("procedures", "performer"),
            ("reports", "performer"),
            ("imaging_studies", "performer"),
            ("lab_results", "performing_lab"),
            ("treatment_plans", "author"),
        ] {
            let unknown = app
                .count(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE {column} LIKE 'Unknown%'"
                ))
                .await;
            assert_eq!(unknown, 0, "{table}.{column} resolved from the Bundle");
        }
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
        assert_eq!(page.select_text(".record-banner strong"), ["Lupe Little"]);
        let tests: Vec<String> = page
            .table_rows("table")
            .into_iter()
            .skip(1)
            .map(|row| row[0].clone())
            .collect();
        assert!(
            tests
                .iter()
                .any(|t| t.starts_with("Hemoglobin A1c") || t.starts_with("Body Height")),
            "imported results show: {tests:?}"
        );
        assert!(
            page.select_text("article.plan h3")
                .contains(&"Diabetes self management plan".to_string()),
            "imported care plan shows"
        );

        app.assert_audit_log_intact().await;
    }
);

/// The resource types the portal stores.
const KEPT: [&str; 11] = [
    "Patient",
    "Observation",
    "MedicationRequest",
    "CarePlan",
    "Condition",
    "AllergyIntolerance",
    "Immunization",
    "Encounter",
    "Procedure",
    "DiagnosticReport",
    "ImagingStudy",
];

both_engines!(
    a_blood_pressure_panel_stays_one_observation_with_its_identifier,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let lab = Fhir::new(
            &app,
            Some(token(&app, "lab", "system/Observation.write", None).await),
        );
        let component = |code: &str, name: &str, value: f64| {
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": code, "display": name}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]"}})
        };
        let panel = json!({"resourceType": "Observation", "id": "bp-1", "status": "final",
            "identifier": [{"system": "urn:oid:1.2.208.176", "value": "BP-2026-17"}],
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}]},
            "subject": {"reference": format!("Patient/{anne}")},
            "effectiveDateTime": "2026-11-20T08:00:00+00:00",
            "component": [component("8480-6", "Systolic blood pressure", 142.0),
                component("8462-4", "Diastolic blood pressure", 91.0)]});
        let (status, body) = lab.post("/Observation", &panel).await;
        assert_eq!(status, 201, "{body}");

        let anne_app = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/*.read", Some("anne")).await),
        );
        let (status, bundle) = anne_app
            .get("/Observation?code=http://loinc.org|85354-9")
            .await;
        assert_eq!(status, 200, "{bundle}");
        assert_eq!(bundle["total"], 1, "the panel code finds the panel, once");
        let found = &bundle["entry"][0]["resource"];
        assert_eq!(found["code"]["coding"][0]["code"], "85354-9");
        assert!(found["valueQuantity"].is_null());
        let values: Vec<(&str, f64)> = found["component"]
            .as_array()
            .expect("components")
            .iter()
            .map(|c| {
                (
                    c["code"]["coding"][0]["code"].as_str().unwrap(),
                    c["valueQuantity"]["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(values, [("8480-6", 142.0), ("8462-4", 91.0)]);
        assert_eq!(
            found["identifier"],
            json!([{"system": "urn:oid:1.2.208.176", "value": "BP-2026-17"}])
        );
        let id = found["id"].as_str().unwrap();
        let (status, read) = anne_app.get(&format!("/Observation/{id}")).await;
        assert_eq!(status, 200);
        assert_eq!(read["component"], found["component"]);
        // A component is part of the panel, not an Observation of its own, as the lab sent it.
        let (_, by_component) = anne_app.get("/Observation?code=8480-6").await;
        assert_eq!(by_component["total"], 0);

        // In the pages each component keeps its history and trend.
        let mut browser = app.browser();
        let page = browser.login("anne").await;
        page.assert_ok();
        let history = browser.get("/me/labs/8480-6").await;
        history.assert_ok();
        assert!(history.contains("142"), "systolic history shows");
        app.assert_audit_log_intact().await;
    }
);

fn ingest_total(map: &std::collections::BTreeMap<String, u64>) -> u64 {
    KEPT.iter().map(|k| map.get(*k).copied().unwrap_or(0)).sum()
}

// ---------------------------------------------------------------------------------------------
// Writes pass the one decision: who may write what, for whom

fn observation(id: &str, patient: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3", "display": "Potassium"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-20T08:00:00+00:00",
        "valueQuantity": {"value": value, "unit": "mmol/L"},
        "interpretation": [{"coding": [{"code": "HH"}]}]})
}

fn transaction_of(resources: Vec<Value>) -> Value {
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|r| json!({"resource": r}))
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
}

async fn lab_results_with_source_id(app: &TestApp, source_id: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM lab_results WHERE source_id = '{source_id}'"
    ))
    .await
}

/// Audit events about `patient` with this outcome and reason (`%` matches any reason).
async fn events(app: &TestApp, patient: &str, outcome: &str, reason: &str) -> i64 {
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{patient}' AND outcome = '{outcome}' AND reason LIKE '{reason}'"
    ))
    .await
}

both_engines!(
    fhir_writes_pass_the_access_decision,
    |app: TestApp| async move {
        let (anne, karen) = (
            patient_id(&app, "anne").await,
            patient_id(&app, "karen").await,
        );
        let anne_patient_scope = Fhir::new(
            &app,
            Some(token(&app, "anne-app", "patient/Observation.write", Some("anne")).await),
        );
        // A patient token planting a critical result in someone else's record, one by one and
        // in a transaction: refused, nothing stored, the attempt in Karen's log.
        let (status, body) = anne_patient_scope
            .post("/Observation", &observation("planted-1", &karen, 9.9))
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        let (status, _) = anne_patient_scope
            .post(
                "",
                &transaction_of(vec![observation("planted-2", &karen, 9.9)]),
            )
            .await;
        assert_eq!(status, 403);
        for id in ["planted-1", "planted-2"] {
            assert_eq!(lab_results_with_source_id(&app, id).await, 0, "{id} stored");
        }
        assert_eq!(
            events(&app, &karen, "denied", "outside_token_patient").await,
            2,
            "both attempts are in Karen's log"
        );
        // Patients are read-only, in their own record too.
        let (status, _) = anne_patient_scope
            .post("/Observation", &observation("own-1", &anne, 4.0))
            .await;
        assert_eq!(status, 403);
        assert_eq!(lab_results_with_source_id(&app, "own-1").await, 0);
        assert_eq!(events(&app, &anne, "denied", "read_only_access").await, 1);
        let anne_user_scope = Fhir::new(
            &app,
            Some(token(&app, "anne-user", "user/*.write", Some("anne")).await),
        );
        let (status, _) = anne_user_scope
            .post("/Observation", &observation("planted-3", &karen, 9.9))
            .await;
        assert_eq!(status, 403);
        assert_eq!(events(&app, &karen, "denied", "not_your_record").await, 1);

        // A clinician's token can do what the clinician can do in the pages: Dr. Larsen has a
        // care relationship with Karen, none with Anne.
        let larsen = Fhir::new(
            &app,
            Some(
                token(
                    &app,
                    "larsen-app",
                    "user/Observation.write",
                    Some("dr.larsen"),
                )
                .await,
            ),
        );
        let (status, _) = larsen
            .post("/Observation", &observation("larsen-anne", &anne, 4.1))
            .await;
        assert_eq!(status, 403);
        assert_eq!(lab_results_with_source_id(&app, "larsen-anne").await, 0);
        assert_eq!(
            events(&app, &anne, "denied", "no_treatment_relationship").await,
            1
        );
        let (status, body) = larsen
            .post("/Observation", &observation("larsen-karen", &karen, 4.1))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(lab_results_with_source_id(&app, "larsen-karen").await, 1);
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{karen}' AND outcome = 'allowed' AND action = 'write lab_results' AND basis = 'care_relationship'")).await,
            1
        );

        // A lab delivers results for any patient, under its own namespace, audited as such.
        let lab = Fhir::new(
            &app,
            Some(token(&app, "lab", "system/Observation.write", None).await),
        );
        let (status, _) = lab
            .post("/Observation", &observation("lab-anne", &anne, 4.2))
            .await;
        assert_eq!(status, 201);
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM lab_results WHERE source_id = 'lab-anne' AND source_system = 'urn:portal:client:lab' AND patient_id = '{anne}'")).await,
            1
        );
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}' AND outcome = 'allowed' AND action = 'write lab_results' AND basis = 'source_system' AND reason = 'from urn:portal:client:lab'")).await,
            1
        );
    }
);

both_engines!(
    demographics_change_only_through_the_population_register,
    |app: TestApp| async move {
        let anne = patient_id(&app, "anne").await;
        let anne_cpr = app
            .text(&format!(
                "SELECT national_id FROM patients WHERE id = '{anne}'"
            ))
            .await;
        let anne_as_held = || {
            json!({"resourceType": "Patient", "id": "p-anne",
                "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": anne_cpr}],
                "name": [{"family": "Jensen", "given": ["Anne"]}], "gender": "female",
                "birthDate": "1986-04-12"})
        };
        let held_birth = app
            .text(&format!(
                "SELECT birth_date FROM patients WHERE id = '{anne}'"
            ))
            .await;
        let mut as_held = anne_as_held();
        as_held["birthDate"] = json!(held_birth);
        let mut hijack = as_held.clone();
        hijack["name"] = json!([{"family": "Hijacked", "given": ["Mallory"]}]);
        hijack["gender"] = json!("male");
        let name = || async {
            app.text(&format!(
                "SELECT given_name || ' ' || family_name || ' ' || sex FROM patients WHERE id = '{anne}'"
            ))
            .await
        };
        let before = name().await;
        assert_eq!(before, "Anne Jensen female");

        // Bo, with a Patient write scope of his own, and a lab with a wildcard scope: neither
        // may rewrite who Anne is by sending her CPR number.
        let bo = Fhir::new(
            &app,
            Some(token(&app, "bo-app", "patient/Patient.write", Some("bo")).await),
        );
        let (status, _) = bo.post("", &transaction_of(vec![hijack.clone()])).await;
        assert_eq!(status, 403);
        let lab = Fhir::new(&app, Some(token(&app, "lab", "system/*.write", None).await));
        let (status, _) = lab.post("", &transaction_of(vec![hijack.clone()])).await;
        assert_eq!(status, 403);
        assert_eq!(name().await, before, "Anne is still Anne");
        assert_eq!(
            events(&app, &anne, "denied", "demographics_only_from_register").await,
            1,
            "the lab's attempt is in Anne's log"
        );
        assert_eq!(
            events(&app, &anne, "denied", "outside_token_patient").await,
            1
        );

        // Naming Anne exactly as the register holds her is no change: a lab may send her
        // Patient resource along with her results.
        let mut result = observation("lab-with-patient", "p-anne", 4.3);
        result["subject"] = json!({"reference": "Patient/p-anne"});
        let (status, body) = lab
            .post("", &transaction_of(vec![as_held.clone(), result]))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM lab_results WHERE source_id = 'lab-with-patient' AND patient_id = '{anne}'")).await,
            1
        );
        // A patient nobody registered cannot be created by a lab either.
        let stranger = json!({"resourceType": "Patient", "id": "p-stranger",
            "name": [{"family": "Stranger"}], "gender": "male", "birthDate": "1990-01-01"});
        let (status, _) = lab.post("", &transaction_of(vec![stranger.clone()])).await;
        assert_eq!(status, 403);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM patients WHERE family_name = 'Stranger'")
                .await,
            0
        );

        // The population register may.
        let register = Fhir::new(
            &app,
            Some(token(&app, "cpr-register", "system/Patient.write", None).await),
        );
        let (status, _) = register.post("", &transaction_of(vec![hijack])).await;
        assert_eq!(status, 200);
        assert_eq!(name().await, "Mallory Hijacked male");
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}' AND outcome = 'allowed' AND action = 'write demographics' AND basis = 'population_register' AND actor_name = 'system client cpr-register'")).await,
            1
        );
        let (status, _) = register.post("", &transaction_of(vec![stranger])).await;
        assert_eq!(status, 200);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM patients WHERE family_name = 'Stranger'")
                .await,
            1
        );
    }
);

both_engines!(
    an_update_never_moves_a_record_to_another_patient,
    |app: TestApp| async move {
        let (karen, bo) = (
            patient_id(&app, "karen").await,
            patient_id(&app, "bo").await,
        );
        let lab = Fhir::new(
            &app,
            Some(token(&app, "lab", "system/Observation.write", None).await),
        );
        let (status, _) = lab
            .post("/Observation", &observation("lab-42", &karen, 4.0))
            .await;
        assert_eq!(status, 201);
        let (status, body) = lab
            .put("/Observation/lab-42", &observation("lab-42", &bo, 6.5))
            .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            app.text("SELECT patient_id || ' ' || CAST(value_numeric AS TEXT) FROM lab_results WHERE source_id = 'lab-42'")
                .await
                .split(' ')
                .next()
                .unwrap(),
            karen,
            "the result stays Karen's"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM lab_results WHERE source_id = 'lab-42' AND value_numeric = 4.0")
                .await,
            1,
            "and unchanged"
        );
        for patient in [&karen, &bo] {
            assert_eq!(
                events(&app, patient, "denied", "record_of_another_patient").await,
                1,
                "the refusal is in both chains"
            );
        }
        // The same in a transaction: refused whole.
        let (status, _) = lab
            .post(
                "",
                &transaction_of(vec![
                    observation("lab-43", &bo, 4.0),
                    observation("lab-42", &bo, 6.5),
                ]),
            )
            .await;
        assert_eq!(status, 403);
        assert_eq!(lab_results_with_source_id(&app, "lab-43").await, 0);
    }
);

both_engines!(
    patient_scopes_reach_only_the_tokens_own_patient,
    |app: TestApp| async move {
        // Bo holds Karen's power of attorney: in the pages, and with a user/ token, he reads
        // her results; a patient/ token is his own record's only.
        let (bo, karen) = (
            patient_id(&app, "bo").await,
            patient_id(&app, "karen").await,
        );
        let patient_scope = Fhir::new(
            &app,
            Some(token(&app, "bo-app", "patient/*.read", Some("bo")).await),
        );
        let (status, _) = patient_scope
            .get(&format!("/Observation?patient={bo}"))
            .await;
        assert_eq!(status, 200);
        let (status, _) = patient_scope
            .get(&format!("/MedicationRequest?patient={karen}"))
            .await;
        assert_eq!(status, 403);
        assert_eq!(
            events(&app, &karen, "denied", "outside_token_patient").await,
            1
        );
        let user_scope = Fhir::new(
            &app,
            Some(token(&app, "bo-user", "user/*.read", Some("bo")).await),
        );
        let (status, _) = user_scope
            .get(&format!("/MedicationRequest?patient={karen}"))
            .await;
        assert_eq!(status, 200);
    }
);

fn medication_request(id: &str, patient: &str) -> Value {
    json!({"resourceType": "MedicationRequest", "id": id, "status": "active", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc", "code": "C10AA05", "display": "Atorvastatin 20 mg"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "authoredOn": "2026-11-20T08:00:00+00:00",
        "dosageInstruction": [{"text": "1 tablet in the evening"}]})
}

/// Token name, its user, its scopes, the patients it may write clinical data for, and whether
/// it may change who a patient is.
type MatrixCaller<'a> = (&'a str, Option<&'a str>, &'a str, Vec<&'a String>, bool);

async fn writes_audited(app: &TestApp, patient: &str, actor: &str, allowed: bool) -> i64 {
    let outcome = if allowed { "allowed" } else { "denied" };
    app.count(&format!(
        "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{patient}' AND actor_name = '{actor}' \
         AND outcome = '{outcome}' AND action IN ('write lab_results', 'write prescriptions')"
    ))
    .await
}

// The authorization matrix for FHIR writes: every role and scope kind (patient, user, system)
// against the caller's own record, related patients and unrelated ones. Each cell checks the
// answer, what was stored and the audit event in the target patient's chain.
both_engines!(
    fhir_write_matrix_every_role_and_scope_kind,
    |app: TestApp| async move {
        let [anne, karen, bo] = [
            patient_id(&app, "anne").await,
            patient_id(&app, "karen").await,
            patient_id(&app, "bo").await,
        ];
        let callers: [MatrixCaller; 8] = [
            (
                "anne-patient",
                Some("anne"),
                "patient/*.write",
                vec![],
                false,
            ),
            ("anne-user", Some("anne"), "user/*.write", vec![], false),
            (
                "hansen-user",
                Some("dr.hansen"),
                "user/*.write",
                vec![&anne, &karen],
                false,
            ),
            (
                "larsen-user",
                Some("dr.larsen"),
                "user/*.write",
                vec![&bo, &karen],
                false,
            ),
            (
                "auditor-user",
                Some("auditor"),
                "user/*.write",
                vec![],
                false,
            ),
            ("admin-user", Some("admin"), "user/*.write", vec![], false),
            (
                "lab",
                None,
                "system/*.write",
                vec![&anne, &karen, &bo],
                false,
            ),
            (
                "register",
                None,
                "system/Patient.write system/*.write",
                vec![&anne, &karen, &bo],
                true,
            ),
        ];
        for (name, user, scopes, may_write, registers) in callers {
            let caller = Fhir::new(&app, Some(token(&app, name, scopes, user).await));
            let actor = match user {
                Some(u) => {
                    app.text(&format!(
                        "SELECT display_name FROM users WHERE username = '{u}'"
                    ))
                    .await
                }
                None => format!("system client {name}"),
            };
            for target in [&anne, &karen, &bo] {
                let allowed = may_write.contains(&target);
                let cell = format!("{name} writing for {target}");
                let audited_before = writes_audited(&app, target, &actor, allowed).await;
                let obs = format!("m-{name}-{target}-obs");
                let (status, body) = caller
                    .post("/Observation", &observation(&obs, target, 4.0))
                    .await;
                assert_eq!(status, if allowed { 201 } else { 403 }, "{cell}: {body}");
                let med = format!("m-{name}-{target}-med");
                let (status, body) = caller
                    .post("", &transaction_of(vec![medication_request(&med, target)]))
                    .await;
                assert_eq!(status, if allowed { 200 } else { 403 }, "{cell}: {body}");
                let stored = app
                    .count(&format!(
                        "SELECT (SELECT COUNT(*) FROM lab_results WHERE source_id = '{obs}' AND patient_id = '{target}') \
                         + (SELECT COUNT(*) FROM prescriptions WHERE source_id = '{med}' AND patient_id = '{target}')"
                    ))
                    .await;
                assert_eq!(stored, if allowed { 2 } else { 0 }, "{cell}: rows stored");
                let audited = writes_audited(&app, target, &actor, allowed).await - audited_before;
                assert_eq!(
                    audited, 2,
                    "{cell}: each write audited in the patient's chain"
                );

                // Changing who the patient is: the population register only.
                let cpr = app
                    .text(&format!(
                        "SELECT national_id FROM patients WHERE id = '{target}'"
                    ))
                    .await;
                let renamed = json!({"resourceType": "Patient", "id": format!("m-{target}"),
                    "identifier": [{"system": "urn:oid:1.2.208.176.1.2", "value": cpr}],
                    "name": [{"family": "Renamed", "given": [name]}], "gender": "unknown",
                    "birthDate": app.text(&format!("SELECT birth_date FROM patients WHERE id = '{target}'")).await});
                let (status, body) = caller.post("", &transaction_of(vec![renamed])).await;
                assert_eq!(
                    status,
                    if registers { 200 } else { 403 },
                    "{cell} (demographics): {body}"
                );
                let renamed_by_this_caller = app
                    .count(&format!("SELECT COUNT(*) FROM patients WHERE id = '{target}' AND family_name = 'Renamed' AND given_name = '{name}'"))
                    .await;
                assert_eq!(
                    renamed_by_this_caller == 1,
                    registers,
                    "{cell}: demographics"
                );
            }
        }
    }
);

both_engines!(
    versions_everything_and_includes_refuse_an_unrelated_caller,
    |app: TestApp| async move {
        // Anne's record; Bo and Dr. Larsen (another practice, no relationship) are unrelated.
        let (anne, bo) = (patient_id(&app, "anne").await, patient_id(&app, "bo").await);
        let lab = Fhir::new(
            &app,
            Some(token(&app, "lab", "system/Observation.write", None).await),
        );
        let (status, written) = lab
            .post("/Observation", &observation("lab-anne-1", &anne, 5.0))
            .await;
        assert_eq!(status, 201, "{written}");
        let id = written["id"].as_str().unwrap().to_string();
        let callers = [
            token(&app, "bo-app", "patient/*.read", Some("bo")).await,
            token(&app, "larsen-app", "user/*.read", Some("dr.larsen")).await,
        ];
        for secret in callers {
            let caller = Fhir::new(&app, Some(secret));
            for path in [
                format!("/Observation/{id}/_history"),
                format!("/Observation/{id}/_history/1"),
                format!("/Patient/{anne}/$everything"),
                format!("/Patient?_id={anne}&_revinclude=Observation:subject"),
            ] {
                let (status, body) = caller.get(&path).await;
                let refused = matches!(status, 403 | 404)
                    || (status == 200 && body["entry"].as_array().is_none_or(|e| e.is_empty()));
                assert!(refused, "{path}: {status} {body}");
                assert_ne!(body["resourceType"], "Observation", "{path}");
            }
        }
        let refusals = app
            .count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{anne}' AND outcome = 'denied'"
            ))
            .await;
        assert!(refusals >= 6, "each refused read is audited: {refusals}");
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM audit_events WHERE patient_id = '{bo}' AND outcome = 'denied'"
            ))
            .await,
            0,
            "the refusals are Anne's to see, not the callers'"
        );
    }
);
