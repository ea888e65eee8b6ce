//! Proof of safety, part one: the authorization matrix. Every route is read from the router
//! itself and must belong to an area below; every role is tried on every route (GET and POST as
//! the route offers them) and must get exactly the area's answer. Nothing answers with a server
//! error, and no denied answer carries clinical data.

mod support;

use std::collections::BTreeMap;

use sqlx::Row;
use support::{Browser, TestApp};

/// (path, methods) of every route, parsed from the router's Debug output: the route table
/// (`RouteId(n): "/path"`) and each route's `allow_header` (`b"GET,HEAD"`).
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
            let allow = after.find("allow_header: Bytes(b\"").expect("allow header") + 22;
            let list = &after[allow..allow + after[allow..].find('"').unwrap()];
            methods.insert(
                id,
                list.split(',')
                    .filter(|m| *m != "HEAD")
                    .map(str::to_string)
                    .collect(),
            );
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
        | "/fhir/r4/metadata" => Area::Public,
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

async fn one(app: &TestApp, sql: &str) -> String {
    sqlx::query(sql)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
        .get::<String, _>(0)
}

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
    let anne = one(
        &app,
        "SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
    )
    .await;
    let cpr = one(
        &app,
        "SELECT national_id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
    )
    .await;
    let code = one(
        &app,
        &format!("SELECT code FROM lab_results WHERE patient_id = '{anne}'"),
    )
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
    let mut checked = 0;
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
                    Area::Fhir => Some(401),
                    Area::SignedIn if *signed_in => None,
                    _ if !*signed_in => Some(303),
                    Area::SignedIn => None,
                    a if Some(a) == *home => None,
                    _ => Some(403),
                };
                match expected_denial {
                    Some(303) => {
                        assert_eq!(page.status, 303, "{what}");
                        assert_eq!(page.headers["location"], "/login", "{what}");
                    }
                    Some(status) => assert_eq!(page.status, status, "{what}"),
                    None => assert!(
                        ![401, 403].contains(&page.status)
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
