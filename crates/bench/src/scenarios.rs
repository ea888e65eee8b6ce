//! The scenarios: who signs in on each connection and what it asks for, over and over.
//!
//! | scenario | connections sign in as | request |
//! |---|---|---|
//! | `overview` | a patient each | `GET /me` |
//! | `record` | a clinician each | `GET /clinician/patients/{id}`, patients listed with the clinic, in turn |
//! | `lookup-cpr` | a clinician each | `POST /clinician/lookup` with a listed patient's CPR number |
//! | `lookup-name` | a clinician each | `POST /clinician/lookup` with name and birth date |
//! | `audit-filter` | an auditor each | `POST /audit` with one of five filters in turn |
//! | `fhir-search` | a patient's API token each | `GET /fhir/r4/Observation?_count=20` |
//! | `fhir-import` | a register's API token | `POST /fhir/r4` with a sample Bundle made new each time |
//! | `login-page` | nobody (a new visitor each time, no cookies) | `GET /login` |
//! | `login` | half sign in again and again, half view `/me` | the form, then the password |

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures::{StreamExt, TryStreamExt};
use records_domain::db::UuidText;
use records_domain::Db;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE,
};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::http::{client, csrf_of, fresh_address, Browser, Totp};
use crate::population::{import_cpr, PASSWORD};

/// Sign-ins while setting up a scenario, at most this many at once: the portal answers 503
/// to sign-ins that wait more than a few seconds for its password hashing.
const SIGN_IN_CONCURRENCY: usize = 8;

/// The scenarios in the order they run.
pub const ALL: &[&str] = &[
    "overview",
    "record",
    "lookup-cpr",
    "lookup-name",
    "audit-filter",
    "fhir-search",
    "fhir-import",
    "login-page",
    "login",
];

pub fn title(scenario: &str) -> &'static str {
    match scenario {
        "overview" => "patient overview (GET /me)",
        "record" => "clinician record view",
        "lookup-cpr" => "GP lookup by CPR",
        "lookup-name" => "GP lookup by name + birth date",
        "audit-filter" => "auditor filter (POST /audit)",
        "fhir-search" => "FHIR Observation search",
        "fhir-import" => "FHIR import (transaction Bundles)",
        "login-page" => "sign-in page (GET /login, anonymous)",
        "login" => "login under load",
        _ => "unknown scenario",
    }
}

/// What a connection does.
#[derive(Clone)]
enum Plan {
    /// GET the paths in turn; expect 200.
    Get(Arc<Vec<String>>),
    /// POST the forms in turn, with the session's CSRF token; expect 200.
    Post {
        path: &'static str,
        forms: Arc<Vec<Vec<(&'static str, String)>>>,
    },
    /// POST a transaction Bundle; counts the resources the portal stored.
    Import(Arc<Importer>),
    /// A new visitor signs in: the form, then user name and password; expect 303 to /me.
    SignIn(Arc<Vec<String>>),
}

/// One connection of a scenario.
#[derive(Clone)]
pub struct Worker {
    browser: Browser,
    plan: Plan,
    /// Where in the plan's list this connection starts, so connections spread over it.
    offset: u64,
}

/// The whole answer is read, as a browser would, before the request counts as done.
async fn expect(response: reqwest::Response, status: StatusCode) -> anyhow::Result<()> {
    let got = response.status();
    let body = response.bytes().await?;
    anyhow::ensure!(
        got == status,
        "{got} (expected {status}): {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    Ok(())
}

impl Worker {
    /// A connection that asks for `path` again and again (the ceiling's page).
    pub fn get(browser: Browser, path: &str) -> Self {
        Self {
            browser,
            plan: Plan::Get(Arc::new(vec![path.to_string()])),
            offset: 0,
        }
    }

    /// Send the `n`-th request; `Ok(units)` when it was answered as expected.
    pub async fn call(&mut self, n: u64) -> anyhow::Result<u64> {
        let i = (self.offset + n) as usize;
        let b = &self.browser;
        match &self.plan {
            Plan::Get(paths) => {
                let path = &paths[i % paths.len()];
                let response = b.client.get(format!("{}{path}", b.base)).send().await?;
                expect(response, StatusCode::OK).await?;
                Ok(1)
            }
            Plan::Post { path, forms } => {
                let mut form = forms[i % forms.len()].clone();
                form.push(("csrf", b.csrf.clone()));
                let response = b
                    .client
                    .post(format!("{}{path}", b.base))
                    .form(&form)
                    .send()
                    .await?;
                expect(response, StatusCode::OK).await?;
                Ok(1)
            }
            Plan::Import(importer) => {
                let bundle = importer.bundle(i)?;
                let response = b
                    .client
                    .post(format!("{}/fhir/r4", b.base))
                    .header(CONTENT_TYPE, "application/fhir+json")
                    .body(bundle)
                    .send()
                    .await?;
                let status = response.status();
                let reply: Value = response.json().await.context("reply to a Bundle")?;
                anyhow::ensure!(status == StatusCode::OK, "{status}: {reply}");
                let stored = stored_resources(&reply);
                anyhow::ensure!(
                    stored > 0,
                    "the portal stored nothing of the Bundle: {reply}"
                );
                Ok(stored)
            }
            Plan::SignIn(usernames) => {
                let username = &usernames[i % usernames.len()];
                let address = fresh_address();
                let form = b
                    .client
                    .get(format!("{}/login", b.base))
                    .header("x-forwarded-for", &address)
                    .send()
                    .await?;
                let cookies: Vec<String> = form
                    .headers()
                    .get_all(SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .filter_map(|v| v.split(';').next())
                    .map(str::to_string)
                    .collect();
                let token = csrf_of(&form.text().await?).context("sign-in form without token")?;
                let response = b
                    .client
                    .post(format!("{}/login", b.base))
                    .header("x-forwarded-for", &address)
                    .header(COOKIE, cookies.join("; "))
                    .form(&[
                        ("csrf", token.as_str()),
                        ("username", username.as_str()),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await?;
                let to = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                expect(response, StatusCode::SEE_OTHER).await?;
                anyhow::ensure!(to == "/me", "sign-in of {username} went to {to:?}");
                Ok(1)
            }
        }
    }
}

/// The entries of a transaction response that were created or updated: those with a
/// `201 Created` or `200 OK` status and a `location` (a skipped type has none).
fn stored_resources(reply: &Value) -> u64 {
    reply["entry"].as_array().map_or(0, |entries| {
        entries
            .iter()
            .filter(|e| e["response"]["location"].is_string())
            .filter(|e| {
                let status = e["response"]["status"].as_str().unwrap_or_default();
                status.starts_with("201") || status.starts_with("200")
            })
            .count() as u64
    })
}

struct Staff {
    username: String,
    clinic: Option<Uuid>,
}

/// A bench user as `Fixture::load` reads it.
#[derive(sqlx::FromRow)]
struct BenchUser {
    id: UuidText,
    username: String,
    role: String,
    clinic_id: Option<UuidText>,
    totp_secret: Option<String>,
    totp_last_step: Option<i64>,
}

/// A listed patient, as a clinician would find them (as text: it goes into forms).
#[derive(Clone, sqlx::FromRow)]
struct Listed {
    id: String,
    cpr: String,
    name: String,
    birth_date: String,
}

/// What the scenarios need from the loaded database: users, their secrets and patients.
/// Users are handed out in turn across the whole run, so no clinician or auditor signs in
/// twice within one TOTP step unless the run needs more of them than were loaded.
pub struct Fixture {
    db: Db,
    base: String,
    patients: Vec<(String, Uuid)>,
    clinicians: Vec<Staff>,
    auditors: Vec<Staff>,
    totp: Arc<Totp>,
    next_patient: usize,
    next_clinician: usize,
    next_auditor: usize,
    listed: HashMap<Uuid, Arc<Vec<Listed>>>,
}

impl Fixture {
    pub async fn load(db: Db, base: &str) -> anyhow::Result<Self> {
        let mut conn = db.pool().acquire().await?;
        let rows: Vec<BenchUser> = sqlx::query_as(
            "SELECT id, username, role, clinic_id, totp_secret, totp_last_step FROM users \
             WHERE username LIKE 'bench-%' ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut fixture = Self {
            db: db.clone(),
            base: base.to_string(),
            patients: Vec::new(),
            clinicians: Vec::new(),
            auditors: Vec::new(),
            totp: Arc::default(),
            next_patient: 0,
            next_clinician: 0,
            next_auditor: 0,
            listed: HashMap::new(),
        };
        let mut secrets = HashMap::new();
        let mut last_steps = HashMap::new();
        for row in rows {
            let username = row.username;
            if let Some(secret) = row.totp_secret {
                secrets.insert(username.clone(), secret);
            }
            if let Some(step) = row.totp_last_step {
                last_steps.insert(username.clone(), u64::try_from(step).unwrap_or(0));
            }
            let staff = Staff {
                username: username.clone(),
                clinic: row.clinic_id.map(Uuid::from),
            };
            match row.role.as_str() {
                "patient" => fixture.patients.push((username, row.id.0)),
                "clinician" => fixture.clinicians.push(staff),
                "auditor" => fixture.auditors.push(staff),
                _ => {}
            }
        }
        anyhow::ensure!(
            !fixture.patients.is_empty()
                && !fixture.clinicians.is_empty()
                && !fixture.auditors.is_empty(),
            "the database holds no bench users: load it with `portal-bench load`"
        );
        fixture.totp = Arc::new(Totp::new(secrets, last_steps));
        Ok(fixture)
    }

    fn next_patient_user(&mut self) -> (String, Uuid) {
        let user = self.patients[self.next_patient % self.patients.len()].clone();
        self.next_patient += 1;
        user
    }

    async fn listed_with(&mut self, clinic: Uuid) -> anyhow::Result<Arc<Vec<Listed>>> {
        if let Some(listed) = self.listed.get(&clinic) {
            return Ok(listed.clone());
        }
        let mut conn = self.db.pool().acquire().await?;
        let listed: Vec<Listed> = sqlx::query_as(
            "SELECT id, national_id AS cpr, given_name || ' ' || family_name AS name, birth_date \
             FROM patients WHERE gp_clinic_id = $1 ORDER BY id LIMIT 200",
        )
        .bind(UuidText(clinic))
        .fetch_all(&mut *conn)
        .await?;
        anyhow::ensure!(!listed.is_empty(), "clinic {clinic} lists no patients");
        let listed = Arc::new(listed);
        self.listed.insert(clinic, listed.clone());
        Ok(listed)
    }

    /// `n` patients signed in, each on a connection of their own.
    async fn patients_signed_in(&mut self, n: usize) -> anyhow::Result<Vec<Browser>> {
        let users: Vec<String> = (0..n).map(|_| self.next_patient_user().0).collect();
        let base = self.base.clone();
        futures::stream::iter(users.into_iter().map(|username| {
            let base = base.clone();
            async move {
                let mut b = Browser::new(&base)?;
                b.sign_in(&username, None, "/me").await?;
                Ok::<_, anyhow::Error>(b)
            }
        }))
        .buffered(SIGN_IN_CONCURRENCY)
        .try_collect()
        .await
    }

    /// `n` staff of `role`, signed in with password and TOTP, each on a connection of their own.
    async fn staff_signed_in(
        &mut self,
        auditors: bool,
        n: usize,
        form_page: &str,
    ) -> anyhow::Result<Vec<(Browser, Option<Uuid>)>> {
        let mut chosen = Vec::new();
        for _ in 0..n {
            let (pool, next) = if auditors {
                (&self.auditors, &mut self.next_auditor)
            } else {
                (&self.clinicians, &mut self.next_clinician)
            };
            let staff = &pool[*next % pool.len()];
            *next += 1;
            chosen.push((staff.username.clone(), staff.clinic));
        }
        let base = self.base.clone();
        let totp = self.totp.clone();
        futures::stream::iter(chosen.into_iter().map(|(username, clinic)| {
            let (base, totp) = (base.clone(), totp.clone());
            async move {
                let mut b = Browser::new(&base)?;
                b.sign_in(&username, Some(&totp), form_page).await?;
                Ok::<_, anyhow::Error>((b, clinic))
            }
        }))
        .buffered(SIGN_IN_CONCURRENCY)
        .try_collect()
        .await
    }

    async fn clinician_workers(
        &mut self,
        n: usize,
        plan: impl Fn(&[Listed]) -> Plan,
    ) -> anyhow::Result<Vec<Worker>> {
        let signed_in = self.staff_signed_in(false, n, "/clinician").await?;
        let mut workers = Vec::new();
        for (k, (browser, clinic)) in signed_in.into_iter().enumerate() {
            let clinic = clinic.context("a clinician without a clinic")?;
            let listed = self.listed_with(clinic).await?;
            workers.push(Worker {
                browser,
                plan: plan(&listed),
                offset: 7 * k as u64,
            });
        }
        Ok(workers)
    }

    /// The connections of `scenario` (for `login`: page views in group 0, sign-ins in group 1).
    pub async fn workers(
        &mut self,
        scenario: &str,
        connections: usize,
        samples: &Path,
    ) -> anyhow::Result<Vec<(usize, Worker)>> {
        let n = connections.max(1);
        let workers = match scenario {
            "overview" => self.overview(n).await?,
            "record" => {
                self.clinician_workers(n, |listed| {
                    Plan::Get(Arc::new(
                        listed
                            .iter()
                            .map(|p| format!("/clinician/patients/{}", p.id))
                            .collect(),
                    ))
                })
                .await?
            }
            "lookup-cpr" => {
                self.clinician_workers(n, |listed| Plan::Post {
                    path: "/clinician/lookup",
                    forms: Arc::new(
                        listed
                            .iter()
                            .map(|p| vec![("cpr", p.cpr.clone())])
                            .collect(),
                    ),
                })
                .await?
            }
            "lookup-name" => {
                self.clinician_workers(n, |listed| Plan::Post {
                    path: "/clinician/lookup",
                    forms: Arc::new(
                        listed
                            .iter()
                            .map(|p| {
                                vec![
                                    ("name", p.name.clone()),
                                    ("birth_date", p.birth_date.clone()),
                                ]
                            })
                            .collect(),
                    ),
                })
                .await?
            }
            "audit-filter" => self.audit_filter(n).await?,
            "fhir-search" => self.fhir_search(n).await?,
            "fhir-import" => self.fhir_import(n, samples).await?,
            "login-page" => self.visitors(n)?,
            "login" => {
                let signing_in = (n / 2).max(1);
                let pages = self.overview(n.saturating_sub(signing_in).max(1)).await?;
                let usernames: Arc<Vec<String>> =
                    Arc::new(self.patients.iter().map(|(u, _)| u.clone()).collect());
                let mut workers: Vec<(usize, Worker)> = pages.into_iter().map(|w| (0, w)).collect();
                for k in 0..signing_in {
                    workers.push((
                        1,
                        Worker {
                            browser: Browser {
                                client: client(false, HeaderMap::new())?,
                                base: self.base.clone(),
                                csrf: String::new(),
                            },
                            plan: Plan::SignIn(usernames.clone()),
                            offset: 101 * k as u64,
                        },
                    ));
                }
                return Ok(workers);
            }
            other => anyhow::bail!("no scenario {other:?}; choose from {}", ALL.join(", ")),
        };
        Ok(workers.into_iter().map(|w| (0, w)).collect())
    }

    /// Visitors without cookies: every request is a first visit, as the page's cost for
    /// anyone arriving from a search engine or a link.
    fn visitors(&self, n: usize) -> anyhow::Result<Vec<Worker>> {
        let paths = Arc::new(vec!["/login".to_string()]);
        (0..n)
            .map(|_| {
                Ok(Worker {
                    browser: Browser {
                        client: client(false, HeaderMap::new())?,
                        base: self.base.clone(),
                        csrf: String::new(),
                    },
                    plan: Plan::Get(paths.clone()),
                    offset: 0,
                })
            })
            .collect()
    }

    async fn overview(&mut self, n: usize) -> anyhow::Result<Vec<Worker>> {
        let paths = Arc::new(vec!["/me".to_string()]);
        Ok(self
            .patients_signed_in(n)
            .await?
            .into_iter()
            .map(|browser| Worker {
                browser,
                plan: Plan::Get(paths.clone()),
                offset: 0,
            })
            .collect())
    }

    /// Five filters in turn: one patient's events, one clinician's, denied summary reads,
    /// a clinic's, and GP-listing reads of the last 30 days.
    async fn audit_filter(&mut self, n: usize) -> anyhow::Result<Vec<Worker>> {
        let clinician = self.clinicians.first().context("no clinicians")?;
        let (clinician_name, clinic) = (
            clinician.username.clone(),
            clinician.clinic.context("a clinician without a clinic")?,
        );
        let listed = self.listed_with(clinic).await?;
        let since = crate::rows::date_text(
            time::OffsetDateTime::now_utc()
                .unix_timestamp()
                .div_euclid(86_400)
                - 30,
        );
        let mut forms = Vec::new();
        for (k, patient) in listed.iter().take(20).enumerate() {
            forms.push(match k % 5 {
                0 => vec![("cpr", patient.cpr.clone())],
                1 => vec![("actor", clinician_name.clone())],
                2 => vec![
                    ("action", "read summary".into()),
                    ("outcome", "denied".into()),
                ],
                3 => vec![("clinic", clinic.to_string())],
                _ => vec![("basis", "gp_listing".into()), ("from", since.clone())],
            });
        }
        let forms = Arc::new(forms);
        Ok(self
            .staff_signed_in(true, n, "/audit")
            .await?
            .into_iter()
            .enumerate()
            .map(|(k, (browser, _))| Worker {
                browser,
                plan: Plan::Post {
                    path: "/audit",
                    forms: forms.clone(),
                },
                offset: k as u64,
            })
            .collect())
    }

    async fn token(&self, name: &str, scopes: &str, user: Option<Uuid>) -> anyhow::Result<String> {
        let mut tx = self.db.begin_write().await?;
        let secret = access_control::tokens::create(&mut tx, name, scopes, user).await?;
        tx.commit().await?;
        Ok(secret)
    }

    fn bearer_browser(&self, token: &str) -> anyhow::Result<Browser> {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}"))?,
        );
        headers.insert("x-forwarded-for", HeaderValue::from_str(&fresh_address())?);
        Ok(Browser {
            client: client(false, headers)?,
            base: self.base.clone(),
            csrf: String::new(),
        })
    }

    async fn fhir_search(&mut self, n: usize) -> anyhow::Result<Vec<Worker>> {
        let paths = Arc::new(vec!["/fhir/r4/Observation?_count=20".to_string()]);
        let mut workers = Vec::new();
        for _ in 0..n {
            let (username, user) = self.next_patient_user();
            let token = self
                .token(
                    &format!("bench-app-{username}"),
                    "patient/*.read",
                    Some(user),
                )
                .await?;
            workers.push(Worker {
                browser: self.bearer_browser(&token)?,
                plan: Plan::Get(paths.clone()),
                offset: 0,
            });
        }
        Ok(workers)
    }

    async fn fhir_import(&mut self, n: usize, samples: &Path) -> anyhow::Result<Vec<Worker>> {
        let taken: HashSet<String> = {
            let mut conn = self.db.pool().acquire().await?;
            sqlx::query_scalar("SELECT national_id FROM patients WHERE birth_date >= '2020-01-01'")
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect()
        };
        let importer = Arc::new(Importer::from_dir(samples, taken)?);
        let token = self
            .token(
                "bench-register",
                "system/Patient.write system/Observation.write system/MedicationRequest.write \
                 system/CarePlan.write system/Condition.write system/AllergyIntolerance.write \
                 system/Immunization.write system/Encounter.write system/Procedure.write \
                 system/DiagnosticReport.write system/ImagingStudy.write",
                None,
            )
            .await?;
        let mut workers = Vec::new();
        for k in 0..n {
            workers.push(Worker {
                browser: self.bearer_browser(&token)?,
                plan: Plan::Import(importer.clone()),
                offset: k as u64,
            });
        }
        Ok(workers)
    }
}

/// The FHIR Bundles of a folder as templates: every UUID in them (resource ids, full URLs,
/// references) is replaced by a fresh one on each use, and each Patient gets a CPR number
/// and birth date nobody has, so that every POST stores new resources for a new patient.
pub struct Importer {
    templates: Vec<Vec<Part>>,
    /// The next import number to try, and the CPR numbers already in the database.
    numbers: Mutex<(u64, HashSet<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Uuid(usize),
    Cpr,
    BirthDate,
}

const CPR_MARK: &str = "@@bench-cpr@@";
const BIRTH_MARK: &str = "@@bench-birth-date@@";

impl Importer {
    pub fn from_dir(dir: &Path, taken: HashSet<String>) -> anyhow::Result<Self> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("FHIR samples in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        anyhow::ensure!(!files.is_empty(), "no .json Bundles in {}", dir.display());
        let templates = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)?;
                template(&text).with_context(|| format!("{}", f.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            templates,
            numbers: Mutex::new((0, taken)),
        })
    }

    fn next_cpr(&self) -> anyhow::Result<(String, String)> {
        let mut numbers = self
            .numbers
            .lock()
            .map_err(|_| anyhow::anyhow!("import numbering poisoned"))?;
        loop {
            let (cpr, birth) = import_cpr(numbers.0);
            numbers.0 += 1;
            if numbers.1.insert(cpr.clone()) {
                return Ok((cpr, birth));
            }
        }
    }

    pub fn bundle(&self, n: usize) -> anyhow::Result<String> {
        let parts = &self.templates[n % self.templates.len()];
        let (cpr, birth) = self.next_cpr()?;
        let mut fresh: HashMap<usize, String> = HashMap::new();
        let mut out = String::with_capacity(
            parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    _ => 36,
                })
                .sum(),
        );
        for part in parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Uuid(k) => out.push_str(
                    fresh
                        .entry(*k)
                        .or_insert_with(|| Uuid::new_v4().to_string()),
                ),
                Part::Cpr => out.push_str(&cpr),
                Part::BirthDate => out.push_str(&birth),
            }
        }
        Ok(out)
    }
}

fn template(bundle: &str) -> anyhow::Result<Vec<Part>> {
    let mut json: Value = serde_json::from_str(bundle)?;
    let entries = json["entry"]
        .as_array_mut()
        .context("a Bundle without entries")?;
    let mut patients = 0;
    for entry in entries.iter_mut() {
        let resource = &mut entry["resource"];
        if resource["resourceType"] == "Patient" {
            patients += 1;
            resource["birthDate"] = Value::from(BIRTH_MARK);
            let cpr = serde_json::json!({ "system": "urn:oid:1.2.208.176.1.2", "value": CPR_MARK });
            match resource["identifier"].as_array_mut() {
                Some(ids) => ids.insert(0, cpr),
                None => resource["identifier"] = Value::Array(vec![cpr]),
            }
        }
    }
    anyhow::ensure!(patients == 1, "a Bundle about one patient, not {patients}");
    Ok(split(&json.to_string()))
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Cut `text` into literal pieces, UUIDs (numbered by first appearance) and the two marks.
fn split(text: &str) -> Vec<Part> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let (mut literal_from, mut i) = (0, 0);
    while i < bytes.len() {
        let found = if bytes.len() - i >= 36 && is_uuid(&bytes[i..i + 36]) {
            let key = text[i..i + 36].to_ascii_lowercase();
            let next = numbers.len();
            Some((Part::Uuid(*numbers.entry(key).or_insert(next)), 36))
        } else if text[i..].starts_with(CPR_MARK) {
            Some((Part::Cpr, CPR_MARK.len()))
        } else if text[i..].starts_with(BIRTH_MARK) {
            Some((Part::BirthDate, BIRTH_MARK.len()))
        } else {
            None
        };
        match found {
            Some((part, len)) => {
                if literal_from < i {
                    parts.push(Part::Text(text[literal_from..i].to_string()));
                }
                parts.push(part);
                i += len;
                literal_from = i;
            }
            None => i += 1,
        }
    }
    if literal_from < bytes.len() {
        parts.push(Part::Text(text[literal_from..].to_string()));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_use_of_a_bundle_is_new_and_consistent() {
        let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:31052ccc-7804-4268-b953-741322eed47e","resource":{"resourceType":"Patient","id":"31052ccc-7804-4268-b953-741322eed47e","birthDate":"1982-04-07"}},
            {"fullUrl":"urn:uuid:c3c9f627-0ae8-486d-8aaa-b2dfa6166b0a","resource":{"resourceType":"Observation","id":"c3c9f627-0ae8-486d-8aaa-b2dfa6166b0a","subject":{"reference":"urn:uuid:31052ccc-7804-4268-b953-741322eed47e"}}}]}"#;
        let importer = Importer {
            templates: vec![template(bundle).unwrap()],
            numbers: Mutex::new((0, HashSet::from([import_cpr(0).0]))),
        };
        let first: Value = serde_json::from_str(&importer.bundle(0).unwrap()).unwrap();
        let second: Value = serde_json::from_str(&importer.bundle(1).unwrap()).unwrap();
        let patient = &first["entry"][0]["resource"];
        assert_eq!(
            patient["identifier"][0]["value"],
            import_cpr(1).0,
            "a taken number is skipped"
        );
        assert_eq!(patient["birthDate"], import_cpr(1).1);
        assert_eq!(
            second["entry"][0]["resource"]["identifier"][0]["value"],
            import_cpr(2).0
        );
        let id = patient["id"].as_str().unwrap();
        assert_ne!(id, "31052ccc-7804-4268-b953-741322eed47e");
        assert_eq!(
            first["entry"][1]["resource"]["subject"]["reference"],
            format!("urn:uuid:{id}")
        );
        assert_ne!(second["entry"][0]["resource"]["id"], patient["id"]);
    }

    #[test]
    fn a_transaction_response_counts_its_stored_entries() {
        let reply = serde_json::json!({"entry": [
            {"response": {"status": "201 Created", "location": "Observation/1/_history/1"}},
            {"response": {"status": "200 OK", "location": "Observation/2/_history/2"}},
            {"response": {"status": "200 OK", "outcome": {"resourceType": "OperationOutcome"}}},
        ]});
        assert_eq!(stored_resources(&reply), 2);
        assert_eq!(stored_resources(&serde_json::json!({})), 0);
    }
}
