//! Proof of safety, part one: the authorization matrix. Every route is read from the router
//! itself and must belong to an area below; every role is tried on every route (GET and POST as
//! the route offers them) and must get exactly the area's answer. Nothing answers with a server
//! error, and no denied answer carries clinical data.

use crate::support;

use std::collections::BTreeMap;

use sqlx::Row;
use support::{Browser, TestApp};

/// (path, methods) of every route, parsed from the router's Debug output: the route table
/// (`RouteId(n): "/path"`) and each route's `allow_header` (`b"GET,HEAD"`; none for `any`).
fn routes() -> Vec<(String, Vec<String>)> {
    let dump = format!("{:?}", portal::app::routes());
    let mut paths = BTreeMap::new();
    let mut methods = BTreeMap::new();
    let mut rest = dump.as_str();
    while let Some(start) = rest.find("RouteId(") {
        rest = &rest[start + 8..];
        let close = rest.find(')').expect("route id");
        let id: u32 = rest[..close].parse().expect("route id number");
        let after = &rest[close + 3..];
        if let Some(path) = after.strip_prefix('"') {
            paths.insert(id, path[..path.find('"').unwrap()].to_string());
        } else if after.starts_with("MethodRouter") {
            // Only this route's part of the dump: the routes come in no fixed order.
            let own = &after[..after.find("RouteId(").unwrap_or(after.len())];
            let listed = match own.find("allow_header: Bytes(b\"") {
                Some(at) => {
                    let list = &own[at + 22..];
                    list[..list.find('"').unwrap()]
                        .split(',')
                        .filter(|m| *m != "HEAD")
                        .map(str::to_string)
                        .collect()
                }
                // An `any` route answers every method and names none: try the two that matter.
                None => vec!["GET".to_string(), "POST".to_string()],
            };
            methods.insert(id, listed);
        }
    }
    assert!(
        paths.len() > 50,
        "the router dump changed shape: {} paths found",
        paths.len()
    );
    paths
        .into_iter()
        // axum's own catch-all for merged fallbacks is not a route of ours.
        .filter(|(_, path)| !path.contains("__private__axum"))
        .map(|(id, path)| (path, methods.remove(&id).unwrap_or_default()))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Area {
    Public,
    SignedIn,
    Patient,
    Clinician,
    Auditor,
    Admin,
    Fhir,
}

/// Every route belongs to exactly one area; a route that fits none fails the test.
fn area(path: &str) -> Area {
    match path {
        "/"
        | "/healthz"
        | "/readyz"
        | "/static/portal.css"
        | "/static/favicon.svg"
        | "/login"
        | "/login/second-factor"
        | "/fhir/r4/metadata"
        | "/fhir/r4/.well-known/smart-configuration"
        // OAuth client credentials: a request without them is refused as a bad bearer token is.
        | "/oauth/token"
        // No such FHIR interaction: an OperationOutcome saying so, for anyone.
        | "/fhir/r4/{*rest}" => Area::Public,
        // The transparency log's checkpoints, key and proofs: hashes and signatures only.
        p if p.starts_with("/transparency/") => Area::Public,
        "/logout"
        | "/account/password"
        | "/account/security"
        | "/account/totp/start"
        | "/account/totp/confirm" => Area::SignedIn,
        p if p == "/me" || p.starts_with("/me/") => Area::Patient,
        p if p == "/clinician" || p.starts_with("/clinician/") => Area::Clinician,
        p if p == "/audit" || p.starts_with("/audit/") => Area::Auditor,
        p if p == "/admin" || p.starts_with("/admin/") => Area::Admin,
        p if p == "/fhir/r4" || p.starts_with("/fhir/r4/") => Area::Fhir,
        other => panic!("route {other} has no row in the authorization matrix"),
    }
}

const ROLES: [(&str, Option<&str>, Option<Area>); 6] = [
    ("anonymous", None, None),
    ("patient", Some("anne"), Some(Area::Patient)),
    ("clinician", Some("dr.hansen"), Some(Area::Clinician)),
    (
        "clinician without relationship",
        Some("dr.larsen"),
        Some(Area::Clinician),
    ),
    ("auditor", Some("auditor"), Some(Area::Auditor)),
    ("administrator", Some("admin"), Some(Area::Admin)),
];

fn fill(path: &str, ids: &BTreeMap<&str, String>) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => ids
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

both_engines!(every_route_against_every_role, |app: TestApp| async move {
    let anne = app
        .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await;
    let cpr = app
        .text(
            "SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
        )
        .await;
    let code = app
        .text(&format!(
            "SELECT code FROM lab_results WHERE patient_id = '{anne}'"
        ))
        .await;
    let ids: BTreeMap<&str, String> = [
        ("patient", anne.clone()),
        ("code", code),
        ("id", anne.clone()),
    ]
    .into_iter()
    .collect();
    let clinical = ["HbA1c", cpr.as_str(), "Reference range"];

    let routes = routes();
    let mut browsers: Vec<(&str, Option<Area>, Browser, bool)> = Vec::new();
    for (role, user, home) in ROLES {
        let mut b = match user {
            Some(u) => app.browser_signed_in_without_redirects(u).await,
            None => app.browser_without_redirects(),
        };
        b.get("/login").await;
        browsers.push((role, home, b, user.is_some()));
    }
    // A source system: a bearer token that may write every resource type and read none.
    let mut tx = app.db.begin_write().await.unwrap();
    let secret = access_control::tokens::create(&mut tx, "matrix-lab", "system/*.write", None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    browsers.push((
        "system token",
        Some(Area::Fhir),
        app.browser_with_bearer(&secret),
        false,
    ));
    let mut checked = 0;
    let mut fhir_refusals = 0;
    for (path, methods) in &routes {
        let area = area(path);
        let url = fill(path, &ids);
        for method in methods {
            for (role, home, browser, signed_in) in browsers.iter_mut() {
                if path == "/logout" {
                    continue; // would end the session the rest of the matrix uses
                }
                let page = match method.as_str() {
                    "GET" => browser.get(&url).await,
                    // FHIR takes JSON only (415 otherwise, before any token is looked at).
                    "POST" if area == Area::Fhir => browser.post_json(&url, "{}").await,
                    "POST" => browser.post(&url, &[]).await,
                    "PUT" => browser.put_json(&url, "{}").await,
                    other => panic!("{other} {path}: add the method to the matrix"),
                };
                let what = format!(
                    "{method} {url} as {role}: {} {}",
                    page.status,
                    page.headers
                        .get("location")
                        .map(|l| l.to_str().unwrap_or(""))
                        .unwrap_or("")
                );
                assert!(page.status < 500, "server error: {what}");
                let expected_denial = match area {
                    Area::Public => None,
                    Area::Fhir if *home == Some(Area::Fhir) && method == "GET" => Some(403),
                    Area::Fhir if *home == Some(Area::Fhir) => None,
                    Area::Fhir => Some(401),
                    Area::SignedIn if *signed_in => None,
                    _ if !*signed_in => Some(303),
                    Area::SignedIn => None,
                    a if Some(a) == *home => None,
                    _ => Some(403),
                };
                match expected_denial {
                    // Calls without a valid token are throttled per address once the burst is
                    // spent: 429 refuses as much as 401 does.
                    Some(401) if page.status == 429 && fhir_refusals > 0 => {}
                    Some(303) => {
                        assert_eq!(page.status, 303, "{what}");
                        assert_eq!(page.headers["location"], "/login", "{what}");
                    }
                    Some(401) => {
                        assert_eq!(page.status, 401, "{what}");
                        fhir_refusals += 1;
                    }
                    Some(status) => assert_eq!(page.status, status, "{what}"),
                    None => assert!(
                        ![401, 403].contains(&page.status)
                            || area == Area::Public
                            || *role == "clinician without relationship",
                        "{what}: {}",
                        page.body
                    ),
                }
                if page.status >= 400 {
                    for word in clinical {
                        assert!(
                            !page.body.contains(word),
                            "clinical data {word:?} in a denied answer: {what}"
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked} cells checked");
});

fn get_routes_of(area_wanted: Area) -> Vec<String> {
    routes()
        .into_iter()
        .filter(|(path, methods)| area(path) == area_wanted && methods.iter().any(|m| m == "GET"))
        .map(|(path, _)| path)
        .collect()
}

// Every record page a clinician can GET, for one patient, in each relationship the policy
// knows: allowed ones open (or say 404 for an id the patient lacks), refused ones offer only
// the override and show nothing of the record.
both_engines!(
    clinician_record_pages_by_relationship,
    |app: TestApp| async move {
        let anne = app
            .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
            .await;
        let bo = app
            .text("SELECT id FROM patients WHERE given_name = 'Bo' AND family_name = 'Nielsen'")
            .await;
        let karen = app
            .text("SELECT id FROM patients WHERE given_name = 'Karen' AND family_name = 'Poulsen'")
            .await;
        let code = app
            .text(&format!(
                "SELECT code FROM lab_results WHERE patient_id = '{anne}'"
            ))
            .await;
        let pages: Vec<String> = get_routes_of(Area::Clinician)
            .into_iter()
            .filter(|p| {
                p.contains("{patient}") && !p.ends_with("/override") && !p.contains("{plan}")
            })
            .collect();
        assert!(pages.len() >= 6, "{pages:?}");
        let mut hansen = app.signed_in("dr.hansen").await;
        let mut larsen = app.signed_in("dr.larsen").await;

        async fn check(
            b: &mut Browser,
            pages: &[String],
            patient: &str,
            code: &str,
            allowed: bool,
            label: &str,
        ) {
            let ids: BTreeMap<&str, String> =
                [("patient", patient.to_string()), ("code", code.to_string())]
                    .into_iter()
                    .collect();
            for page in pages {
                let url = fill(page, &ids);
                let answer = b.get(&url).await;
                if allowed {
                    assert!(
                        answer.status == 200 || answer.status == 404,
                        "{label}: {url} gave {}",
                        answer.status
                    );
                } else {
                    assert_eq!(answer.status, 403, "{label}: {url}");
                    assert!(
                        answer.contains("Emergency access"),
                        "{label}: {url} offers the override"
                    );
                    assert!(
                        !answer.contains("HbA1c") && !answer.contains("Reference range"),
                        "{label}: {url} leaks"
                    );
                }
            }
        }
        check(
            &mut hansen,
            &pages,
            &anne,
            &code,
            true,
            "listed with the practice",
        )
        .await;
        check(
            &mut hansen,
            &pages,
            &bo,
            &code,
            false,
            "not listed, no relationship",
        )
        .await;
        check(
            &mut larsen,
            &pages,
            &karen,
            &code,
            true,
            "care relationship",
        )
        .await;
        check(&mut larsen, &pages, &anne, &code, false, "no relationship").await;

        let mut patient = app.signed_in("anne").await;
        patient.get("/me/blocks").await;
        let hansen_id = app
            .text("SELECT id FROM users WHERE username = 'dr.hansen'")
            .await;
        patient
            .post(
                "/me/blocks",
                &[("target", &format!("clinician:{hansen_id}"))],
            )
            .await
            .assert_ok();
        check(
            &mut hansen,
            &pages,
            &anne,
            &code,
            false,
            "blocked by the patient",
        )
        .await;

        larsen
            .get(&format!("/clinician/patients/{anne}/override"))
            .await;
        larsen
            .post(
                &format!("/clinician/patients/{anne}/override"),
                &[("reason", "Collapsed at the station, needs medication list")],
            )
            .await
            .assert_ok();
        check(
            &mut larsen,
            &pages,
            &anne,
            &code,
            true,
            "under emergency override",
        )
        .await;
        sqlx::query("UPDATE emergency_accesses SET expires_at = '2020-01-01T00:00:00.000000Z'")
            .execute(app.db.pool())
            .await
            .unwrap();
        check(&mut larsen, &pages, &anne, &code, false, "override expired").await;
    }
);

// Every page a citizen can GET, as the record owner, as a guardian and as a holder of a power
// of attorney.
both_engines!(patient_pages_by_proxy_kind, |app: TestApp| async move {
    let anne = app
        .text("SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'")
        .await;
    let emil = app
        .text("SELECT id FROM patients WHERE given_name = 'Emil' AND family_name = 'Jensen'")
        .await;
    let karen = app
        .text("SELECT id FROM patients WHERE given_name = 'Karen' AND family_name = 'Poulsen'")
        .await;
    let code_of = |p: String| format!("SELECT code FROM lab_results WHERE patient_id = '{p}'");
    let pages = get_routes_of(Area::Patient);
    assert!(pages.len() >= 8, "{pages:?}");

    let mut own = app.signed_in("anne").await;
    let ids: BTreeMap<&str, String> = [("code", app.text(&code_of(anne.clone())).await)]
        .into_iter()
        .collect();
    for page in &pages {
        own.get(&fill(page, &ids)).await.assert_ok();
    }

    let mut guardian = app.signed_in("anne").await;
    guardian.get("/me/proxies").await;
    guardian
        .post("/me/switch", &[("patient", &emil)])
        .await
        .assert_ok();
    let ids: BTreeMap<&str, String> = [("code", app.text(&code_of(emil.clone())).await)]
        .into_iter()
        .collect();
    for page in &pages {
        let answer = guardian.get(&fill(page, &ids)).await;
        if page.starts_with("/me/labs") {
            assert_eq!(answer.status, 403, "guardian on {page}");
            assert!(!answer.contains("Reference range"));
        } else if [
            "/me/diagnoses",
            "/me/allergies",
            "/me/contacts",
            "/me/procedures",
            "/me/reports",
            "/me/imaging",
        ]
        .contains(&page.as_str())
        {
            assert_eq!(answer.status, 403, "guardian on {page}");
            assert!(!answer.contains("<table"));
        } else if page.ends_with("chain.json") || page.ends_with("proof.json") {
            assert_eq!(
                answer.status, 404,
                "the chain and its proofs are the owner's alone"
            );
        } else {
            answer.assert_ok();
        }
    }

    let mut attorney = app.signed_in("bo").await;
    attorney.get("/me/proxies").await;
    attorney
        .post("/me/switch", &[("patient", &karen)])
        .await
        .assert_ok();
    let ids: BTreeMap<&str, String> = [("code", app.text(&code_of(karen.clone())).await)]
        .into_iter()
        .collect();
    for page in &pages {
        let answer = attorney.get(&fill(page, &ids)).await;
        if page.ends_with("chain.json") || page.ends_with("proof.json") {
            assert_eq!(
                answer.status, 404,
                "the chain and its proofs are the owner's alone"
            );
        } else {
            answer.assert_ok();
        }
    }
    let on_behalf = sqlx::query(
        "SELECT COUNT(*) FROM audit_events WHERE basis = 'power_of_attorney' AND on_behalf_of = $1",
    )
    .bind(&karen)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
    .get::<i64, _>(0);
    assert!(
        on_behalf >= 5,
        "proxy views are audited on behalf of the patient: {on_behalf}"
    );
});

/// What a successful IDOR would change: every row the id-taking routes can touch.
async fn fingerprint(app: &TestApp) -> Vec<i64> {
    let mut counts = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM blocks WHERE lifted_at IS NULL",
        "SELECT COUNT(*) FROM proxies WHERE revoked_at IS NULL",
        "SELECT COUNT(*) FROM audit_reviews",
        "SELECT COUNT(*) FROM prescriptions WHERE status = 'active'",
        "SELECT COUNT(*) FROM treatment_plans",
        "SELECT CAST(SUM(version) AS BIGINT) FROM treatment_plans",
        "SELECT COUNT(*) FROM lab_results WHERE released_at > '2090'",
    ] {
        counts.push(app.count(sql).await);
    }
    counts
}

// IDOR sweep: every route that takes an id, filled with real ids of another patient's data
// (Bo's), tried by a patient (Anne, on her own record) and by a clinician on a record they may
// open (Karen's). Every answer is a refusal or "not found", and nothing changes.
both_engines!(
    every_id_of_another_patient_is_refused,
    |app: TestApp| async move {
        let bo = app
            .text("SELECT id FROM patients WHERE given_name = 'Bo' AND family_name = 'Nielsen'")
            .await;
        let karen = app
            .text("SELECT id FROM patients WHERE given_name = 'Karen' AND family_name = 'Poulsen'")
            .await;
        // Material of Bo's that the routes could be pointed at.
        let mut bo_browser = app.signed_in("bo").await;
        bo_browser.get("/me/blocks").await;
        let hansen_id = app
            .text("SELECT id FROM users WHERE username = 'dr.hansen'")
            .await;
        bo_browser
            .post(
                "/me/blocks",
                &[("target", &format!("clinician:{hansen_id}"))],
            )
            .await
            .assert_ok();
        // Each kind of id in a route, taken from Bo's data.
        let mut foreign: BTreeMap<&str, String> = BTreeMap::from([("id", bo.clone())]);
        for (name, sql) in [
            (
                "event",
                format!("SELECT id FROM audit_events WHERE patient_id = '{bo}'"),
            ),
            (
                "block",
                format!("SELECT id FROM blocks WHERE patient_id = '{bo}'"),
            ),
            (
                "proxy",
                format!("SELECT id FROM proxies WHERE patient_id = '{karen}'"),
            ),
            (
                "code",
                format!("SELECT code FROM lab_results WHERE patient_id = '{bo}'"),
            ),
            (
                "plan",
                format!("SELECT id FROM treatment_plans WHERE patient_id = '{bo}'"),
            ),
            (
                "prescription",
                format!(
                    "SELECT id FROM prescriptions WHERE patient_id = '{bo}' AND status = 'active'"
                ),
            ),
            (
                "result",
                format!("SELECT id FROM lab_results WHERE patient_id = '{bo}'"),
            ),
        ] {
            foreign.insert(name, app.text(&sql).await);
        }
        let before = fingerprint(&app).await;
        let mut anne = app.browser_signed_in_without_redirects("anne").await;
        let mut hansen = app.browser_signed_in_without_redirects("dr.hansen").await;
        anne.get("/me").await;
        hansen
            .get(&format!("/clinician/patients/{karen}"))
            .await
            .assert_ok();
        let mut tried = 0;
        for (path, methods) in routes() {
            // Routes whose only id is the record itself are covered above; here, the ids in it.
            if !path.replace("{patient}", "").contains('{') {
                continue;
            }
            let browser = match area(&path) {
                Area::Patient => &mut anne,
                Area::Clinician => &mut hansen,
                // Administrators and auditors act on any user or review by design; FHIR ids are
                // swapped with scoped tokens in tests/fhir.rs.
                _ => continue,
            };
            let mut ids = foreign.clone();
            ids.insert("patient", karen.clone());
            let url = fill(&path, &ids);
            for method in methods {
                let page = match method.as_str() {
                    "GET" => browser.get(&url).await,
                    _ => {
                        browser
                            .post(
                                &url,
                                &[
                                    ("reason", "swapped id probe"),
                                    ("version", "1"),
                                    ("title", "Hijacked"),
                                    ("status", "active"),
                                    ("comment", "x"),
                                ],
                            )
                            .await
                    }
                };
                let what = format!("{method} {url}: {}", page.status);
                if url.ends_with("/override")
                    || url.contains(&format!("/labs/{}", ids["code"])) && method == "GET"
                {
                    // The override form of a record one may open anyway, and a lab code the record
                    // also has, are not foreign data.
                    continue;
                }
                assert!([403, 404].contains(&page.status), "{what}: {}", page.body);
                tried += 1;
            }
        }
        assert!(tried >= 7, "{tried} id-taking route/method pairs probed");
        assert_eq!(
            fingerprint(&app).await,
            before,
            "no swapped id changed anything"
        );
    }
);
