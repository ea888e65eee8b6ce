//! The test harness: a real portal on a random port over a fresh database (a SQLite file in a
//! temporary folder, or a fresh PostgreSQL database when TEST_DATABASE_URL is set), and a
//! `Browser` per user with its own cookie jar that fills in CSRF tokens like a real form would.
//!
//! Every journey test is written once and run on both engines with `both_engines!`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use portal::config::Config;
use portal::seed::{demo_logins, DemoLogin};
use records_domain::{Db, Engine, PoolSettings};
use tokio::sync::{Mutex, OnceCell};

/// Run an async test body against SQLite and, when TEST_DATABASE_URL is set, PostgreSQL.
/// `both_engines!(name, with |config| ..., body)` changes the portal's configuration first.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, with $setup:expr, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app =
                    support::TestApp::spawn_with(records_domain::Engine::Sqlite, $setup).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = support::TestApp::spawn_postgres_with($setup).await else {
                    return;
                };
                ($body)(app).await;
            }
        }
    };
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = support::TestApp::spawn(records_domain::Engine::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = support::TestApp::spawn_postgres().await else {
                    return;
                };
                ($body)(app).await;
            }
        }
    };
}

pub struct TestApp {
    pub base: String,
    pub db: Db,
    pub engine: Engine,
    pub database_url: String,
    _dir: Option<tempfile::TempDir>,
}

static SQLITE_TEMPLATE: OnceCell<(tempfile::TempDir, std::path::PathBuf)> = OnceCell::const_new();
static PG_TEMPLATE: OnceCell<String> = OnceCell::const_new();
static PG_CLONE_LOCK: Mutex<()> = Mutex::const_new(());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn config(database_url: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.into(),
        database_read_url: None,
        db_max_connections: 8,
        db_acquire_timeout: std::time::Duration::from_secs(60),
        secure_cookies: false,
        demo: true,
        override_window: time::Duration::hours(2),
        policy: Default::default(),
        audit_retention_years: 10,
        trusted_proxies: 0,
        operations: Default::default(),
    }
}

async fn seeded(url: &str) {
    let db = Db::connect(url, &PoolSettings::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    portal::seed::seed(&db).await.expect("seed");
    db.close().await;
}

/// A change to the test portal's configuration.
pub type Setup = fn(&mut Config);

impl TestApp {
    pub async fn spawn(engine: Engine) -> Self {
        Self::spawn_with(engine, |_| {}).await
    }

    pub async fn spawn_with(engine: Engine, setup: Setup) -> Self {
        match engine {
            Engine::Sqlite => Self::spawn_sqlite(setup).await,
            Engine::Postgres => Self::spawn_postgres_with(setup)
                .await
                .expect("TEST_DATABASE_URL"),
        }
    }

    async fn spawn_sqlite(setup: Setup) -> Self {
        // The demo population is seeded once per test binary and copied for each test.
        let (_, template) = SQLITE_TEMPLATE
            .get_or_init(|| async {
                let dir = tempfile::tempdir().expect("tempdir");
                let seeded_path = dir.path().join("seeded.db");
                let url = format!("sqlite://{}", seeded_path.display());
                seeded(&url).await;
                // A self-contained copy with no WAL file beside it, safe to copy byte for byte.
                let path = dir.path().join("template.db");
                let db = Db::connect(&url, &PoolSettings::default())
                    .await
                    .expect("connect");
                sqlx::query(&format!("VACUUM INTO '{}'", path.display()))
                    .execute(db.pool())
                    .await
                    .expect("vacuum into template");
                db.close().await;
                (dir, path)
            })
            .await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portal.db");
        std::fs::copy(template, &path).expect("copy template");
        let url = format!("sqlite://{}", path.display());
        Self::start(url, Engine::Sqlite, Some(dir), setup).await
    }

    /// `None` (and a note) when TEST_DATABASE_URL is not set: CI always sets it.
    pub async fn spawn_postgres() -> Option<Self> {
        Self::spawn_postgres_with(|_| {}).await
    }

    pub async fn spawn_postgres_with(setup: Setup) -> Option<Self> {
        Self::spawn_postgres_as_with(None, setup).await
    }

    /// A fresh PostgreSQL database served by the portal logged in as `login_role` (created as
    /// a member of the application role `portal_app` if missing) instead of the owner.
    pub async fn spawn_postgres_as(login_role: Option<&str>) -> Option<Self> {
        Self::spawn_postgres_as_with(login_role, |_| {}).await
    }

    async fn spawn_postgres_as_with(login_role: Option<&str>, setup: Setup) -> Option<Self> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            // In CI a PostgreSQL variant that did not run must not count as passed.
            assert!(
                std::env::var("CI").is_err(),
                "CI is set but TEST_DATABASE_URL is not: the PostgreSQL variant cannot run"
            );
            eprintln!("TEST_DATABASE_URL not set: PostgreSQL variant skipped");
            return None;
        };
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("TEST_DATABASE_URL needs a database");
        let run = format!(
            "{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                % 100_000_000
        );
        let template = PG_TEMPLATE
            .get_or_init(|| async {
                let name = format!("portal_test_tmpl_{run}");
                admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
                seeded(&format!("{base}/{name}")).await;
                name
            })
            .await;
        let name = format!(
            "portal_test_{run}_{}",
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        {
            // PostgreSQL copies a template only while nobody else is using it.
            let _guard = PG_CLONE_LOCK.lock().await;
            admin(
                &admin_url,
                &format!("CREATE DATABASE {name} TEMPLATE {template}"),
            )
            .await;
        }
        let served_by = match login_role {
            None => base.clone(),
            Some(role) => {
                admin(
                    &admin_url,
                    &format!(
                        "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \
                         THEN CREATE ROLE {role} LOGIN IN ROLE portal_app; END IF; END$$"
                    ),
                )
                .await;
                let (scheme_user, host) = base
                    .split_once('@')
                    .expect("user@host in TEST_DATABASE_URL");
                let scheme = scheme_user.split_once("//").map_or("postgres:", |(s, _)| s);
                format!("{scheme}//{role}@{host}")
            }
        };
        Some(Self::start(format!("{served_by}/{name}"), Engine::Postgres, None, setup).await)
    }

    async fn start(
        url: String,
        engine: Engine,
        dir: Option<tempfile::TempDir>,
        setup: Setup,
    ) -> Self {
        let mut config = config(&url);
        setup(&mut config);
        let (addr, _server, db) = portal::app::spawn(config).await.expect("portal starts");
        Self {
            base: format!("http://{addr}"),
            db,
            engine,
            database_url: url,
            _dir: dir,
        }
    }

    pub fn browser(&self) -> Browser {
        self.browser_with(reqwest::redirect::Policy::limited(10))
    }

    /// A browser that shows redirects instead of following them.
    pub fn browser_without_redirects(&self) -> Browser {
        self.browser_with(reqwest::redirect::Policy::none())
    }

    /// A client that sends `Authorization: Bearer <token>` on every request (an API client).
    pub fn browser_with_bearer(&self, token: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("token is a header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        self.browser_from(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers),
        )
    }

    /// A browser whose requests reach the portal through a reverse proxy that saw them come
    /// from `forwarded_for` (an `X-Forwarded-For` header on every request; the portal believes
    /// it when configured with `trusted_proxies`).
    pub fn browser_forwarded_for(&self, forwarded_for: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = reqwest::header::HeaderValue::from_str(forwarded_for).expect("header value");
        headers.insert("x-forwarded-for", value);
        self.browser_from(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(10))
                .cookie_store(true)
                .default_headers(headers),
        )
    }

    /// A browser with a cookie jar the test can read.
    pub fn browser_with_cookies(&self, jar: std::sync::Arc<reqwest::cookie::Jar>) -> Browser {
        self.browser_with_jar(reqwest::redirect::Policy::limited(10), jar)
    }

    /// The number of stored sessions.
    pub async fn sessions(&self) -> i64 {
        self.count(match self.engine {
            Engine::Sqlite => "SELECT COUNT(*) FROM tower_sessions",
            Engine::Postgres => "SELECT COUNT(*) FROM tower_sessions.session",
        })
        .await
    }

    fn browser_with(&self, redirects: reqwest::redirect::Policy) -> Browser {
        self.browser_with_jar(redirects, Default::default())
    }

    fn browser_with_jar(
        &self,
        redirects: reqwest::redirect::Policy,
        jar: std::sync::Arc<reqwest::cookie::Jar>,
    ) -> Browser {
        self.browser_from(
            reqwest::Client::builder()
                .redirect(redirects)
                .cookie_provider(jar),
        )
    }

    fn browser_from(&self, builder: reqwest::ClientBuilder) -> Browser {
        Browser {
            client: builder
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            base: self.base.clone(),
            csrf: None,
        }
    }

    /// Signed in like `signed_in`, but showing redirects instead of following them.
    pub async fn browser_signed_in_without_redirects(&self, username: &str) -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let mut b = self.browser_with_jar(reqwest::redirect::Policy::limited(10), jar.clone());
        assert_eq!(b.login(username).await.status, 200, "login of {username}");
        let mut quiet = self.browser_with_jar(reqwest::redirect::Policy::none(), jar);
        quiet.csrf = b.csrf.take();
        quiet
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> String {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<String, _>(0)
    }

    /// The first column of the first row of `sql`, as a number (e.g. a COUNT).
    pub async fn count(&self, sql: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<i64, _>(0)
    }

    /// A browser already signed in as the demo user `username` (second factor included).
    pub async fn signed_in(&self, username: &str) -> Browser {
        let mut b = self.browser();
        let page = b.login(username).await;
        assert_eq!(
            page.status, 200,
            "login of {username} failed: {}",
            page.body
        );
        b
    }
}

async fn admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::Executor::execute(&mut conn, sql).await.expect(sql);
}

/// The TOTP time step last used per (portal, user): the portal takes each step once.
static TOTP_STEPS: std::sync::Mutex<BTreeMap<(String, String), u64>> =
    std::sync::Mutex::new(BTreeMap::new());

/// A code the portal at `base` has not seen yet for `username`: the current step's, or the
/// next step's (the portal allows one step of clock drift), or after waiting for a new step.
pub async fn fresh_totp(base: &str, username: &str, secret: &str) -> String {
    let key = (base.to_string(), username.to_string());
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let current = now.as_secs() / 30;
        let chosen = {
            let mut steps = TOTP_STEPS.lock().unwrap();
            let step = steps
                .get(&key)
                .map_or(current, |last| current.max(last + 1));
            (step <= current + 1).then(|| {
                steps.insert(key.clone(), step);
                step
            })
        };
        match chosen {
            Some(step) => {
                return portal::auth::totp::code_of_step(secret, username, step).expect("totp")
            }
            None => {
                let into_step = now.as_millis() % 30_000;
                tokio::time::sleep(Duration::from_millis((30_000 - into_step) as u64 + 50)).await
            }
        }
    }
}

pub fn demo(username: &str) -> DemoLogin {
    demo_logins()
        .into_iter()
        .find(|l| l.username == username)
        .expect("demo user")
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub url: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    pub fn contains(&self, text: &str) -> bool {
        self.body.contains(text)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(
            self.status, 200,
            "{} gave {}: {}",
            self.url, self.status, self.body
        );
        self
    }

    pub fn is_login_page(&self) -> bool {
        self.url.ends_with("/login") && self.body.contains("<h1>Sign in</h1>")
    }

    /// The value of the first `name="..." value="..."` input with that name.
    pub fn input_value(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }

    /// The first link (href) that starts with `prefix`.
    pub fn link_starting(&self, prefix: &str) -> Option<String> {
        let marker = format!("href=\"{prefix}");
        let start = self.body.find(&marker)? + 6;
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }
}

pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub csrf: Option<String>,
}

impl Browser {
    async fn page(&mut self, response: reqwest::Response) -> Page {
        let status = response.status().as_u16();
        let url = response.url().to_string();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let page = Page {
            status,
            url,
            body,
            headers,
        };
        if let Some(token) = page.input_value("csrf") {
            self.csrf = Some(token);
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        self.page(response).await
    }

    /// POST a form with the CSRF token of the last page this browser saw.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf.clone().unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form).await
    }

    /// POST exactly these fields (no CSRF token added).
    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .expect("POST");
        self.page(response).await
    }

    pub async fn put_json(&mut self, path: &str, body: &str) -> Page {
        let response = self
            .client
            .put(format!("{}{path}", self.base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("PUT");
        self.page(response).await
    }

    pub async fn login_with(&mut self, username: &str, password: &str) -> Page {
        self.get("/login").await;
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    /// Sign in as a demo user, answering the second-factor step when there is one.
    pub async fn login(&mut self, username: &str) -> Page {
        let user = demo(username);
        let page = self.login_with(username, user.password).await;
        match (&user.totp, page.url.ends_with("/login/second-factor")) {
            (Some(secret), true) => {
                let code = fresh_totp(&self.base, username, secret).await;
                self.post("/login/second-factor", &[("code", &code)]).await
            }
            _ => page,
        }
    }

    pub async fn logout(&mut self) -> Page {
        self.post("/logout", &[]).await
    }
}
