//! Real `portal` processes, for the journeys that need one: crashes, signals, separate listeners.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The portal binary with a database and quiet, plain-HTTP settings.
pub fn portal(database_url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portal"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("PORTAL_LOG", "warn")
        .env("PORTAL_DEMO", "false")
        .env("PORTAL_SECURE_COOKIES", "false")
        .env("PORTAL_LOG_KEY_FILE", log_key_file());
    command
}

/// One transparency-log key file for every portal process of this test binary (several
/// processes on one database must sign with the same key, as in production).
pub fn log_key_file() -> std::path::PathBuf {
    static DIR: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| {
        let dir = tempfile::tempdir().expect("a folder for the log key");
        std::fs::write(
            dir.path().join("audit-log.key"),
            super::LOG_KEY.to_secret_text(),
        )
        .expect("write the log key");
        dir
    });
    DIR.path().join("audit-log.key")
}

/// Run a command of the portal to its end; its standard output.
pub fn run_ok(database_url: &str, args: &[&str]) -> String {
    let out = portal(database_url, args).output().expect("run portal");
    assert!(
        out.status.success(),
        "portal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The token `portal token add` printed last on its line.
pub fn token_from(output: &str) -> String {
    output.rsplit(": ").next().unwrap_or("").trim().to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `portal serve` on a free loopback port, once it answers `/readyz`.
#[allow(clippy::zombie_processes)] // the caller stops and waits for the child
pub async fn serve(database_url: &str, env: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let child = portal(database_url, &["serve"])
        .env("PORTAL_BIND", format!("127.0.0.1:{port}"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn portal");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < ready, "portal did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// An empty database of its own on the server TEST_DATABASE_URL names.
pub async fn fresh_postgres(purpose: &str) -> String {
    use sqlx::Connection;
    let admin = super::postgres_admin_url();
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // PostgreSQL cuts names at 63 bytes, and the URL must name the database it made.
    let purpose: String = purpose.chars().take(24).collect();
    let name = format!("portal_test_{purpose}_{}_{n}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// A SQLite database file in `dir`.
pub fn sqlite_in(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("portal.db").display())
}

/// A `portal serve` process, killed if the test fails before it stops it cleanly: a process
/// left behind would hold the test harness's output open.
pub struct Instance(Option<Child>);

impl Instance {
    pub async fn start(database_url: &str, env: &[(&str, String)]) -> (Self, String) {
        let (child, origin) = serve(database_url, env).await;
        (Self(Some(child)), origin)
    }

    pub fn stop(mut self) {
        let mut child = self.0.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        assert!(child.wait().unwrap().success(), "a clean stop");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}
