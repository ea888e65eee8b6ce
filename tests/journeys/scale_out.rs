//! Growing past one machine with PostgreSQL's own tools. Several `portal serve` processes on one
//! database behave as one portal: a session, a lock-out and an emergency override made through
//! one instance hold on the other, and record views through both at once keep the audit log
//! verifiable. With a streaming replica (`DATABASE_READ_URL`), the auditor's searches read from
//! it while every audit row lands on the primary, and an auditor's own change shows on their
//! next page although the replica has not replayed it yet.

use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::support::process::{fresh_postgres, run_ok, Instance};
use crate::support::{self, Browser, Page};

const OVERRIDE_REASON: &str = "Patient unconscious in A&E, need medication history";

async fn scalar(url: &str, sql: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let value: String = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    value
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    conn.close().await.ok();
    n
}

async fn anne(database_url: &str) -> String {
    scalar(
        database_url,
        "SELECT id FROM patients WHERE given_name = 'Anne' AND family_name = 'Jensen'",
    )
    .await
}

async fn override_access(larsen: &mut Browser, record: &str) -> Page {
    larsen.get(&format!("{record}/override")).await.assert_ok();
    larsen
        .post(
            &format!("{record}/override"),
            &[("reason", OVERRIDE_REASON)],
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeys_on_postgres),
    ignore = "TEST_DATABASE_URL is not set: the PostgreSQL variant did not run"
)]
async fn two_instances_on_one_database_are_one_portal() {
    let db = fresh_postgres("two_instances").await;
    run_ok(&db, &["seed"]);
    let (first, a) = Instance::start(&db, &[]).await;
    let (second, b) = Instance::start(&db, &[]).await;
    let record = format!("/clinician/patients/{}", anne(&db).await);

    // A session begun on one instance continues on the other; logging out on one ends it on both.
    let mut patient = Browser::served(&a, &db);
    patient.login("anne").await.assert_ok();
    patient.switch_to(&b);
    let overview = patient.get("/me").await;
    overview.assert_ok();
    assert!(
        overview.url.ends_with("/me"),
        "still signed in: {}",
        overview.url
    );
    let mut kept = patient.copy().without_redirects();
    patient.logout().await;
    kept.switch_to(&a);
    assert_eq!(kept.get("/me").await.status, 303, "signed out on both");

    // A lock-out made through one instance holds on the other.
    let mut attacker = Browser::served(&a, &db);
    for _ in 0..access_control::accounts::LOCK_AFTER_FAILURES {
        let refused = attacker.login_with("karen", "wrong-password-123").await;
        assert_eq!(refused.status, 401);
    }
    let mut karen = Browser::served(&b, &db);
    let right = karen
        .login_with("karen", support::demo("karen").password)
        .await;
    assert_eq!(right.status, 401, "locked on the other instance too");
    assert!(right.contains(portal::auth::login::LOGIN_FAILED));

    // An emergency override opened through one instance holds on the other.
    let mut larsen = Browser::served(&a, &db);
    larsen.login("dr.larsen").await.assert_ok();
    override_access(&mut larsen, &record).await.assert_ok();
    larsen.switch_to(&b);
    let opened = larsen.get(&record).await;
    opened.assert_ok();
    assert!(opened.has(".record-banner.emergency"), "{}", opened.body);

    // Record views through both instances at once: every one audited, the log still verifies.
    let before = count(&db, "SELECT COUNT(*) FROM audit_events").await;
    let mut hansen = Browser::served(&a, &db);
    hansen.login("dr.hansen").await.assert_ok();
    let views_each = 20;
    let viewers: Vec<_> = [&a, &b]
        .into_iter()
        .flat_map(|origin| {
            let mut tab = hansen.clone();
            tab.switch_to(origin);
            let record = record.clone();
            (0..views_each).map(move |_| {
                let mut tab = tab.clone();
                let record = record.clone();
                tokio::spawn(async move { tab.get(&record).await.status })
            })
        })
        .collect();
    for viewer in viewers {
        assert_eq!(viewer.await.unwrap(), 200);
    }
    let after = count(&db, "SELECT COUNT(*) FROM audit_events").await;
    assert!(
        after - before >= 2 * views_each,
        "every view audited: {} events for {} views",
        after - before,
        2 * views_each
    );
    first.stop();
    second.stop();
    let verified = run_ok(&db, &["audit", "verify"]);
    println!("{verified}");
}

/// The standby's server, as TEST_REPLICA_URL names it (`.ci/run` makes one with
/// `pg_basebackup -R`).
fn replica_admin_url() -> String {
    std::env::var("TEST_REPLICA_URL").expect("TEST_REPLICA_URL names the streaming replica")
}

/// The same database on the replica's server.
fn on_replica(database_url: &str) -> String {
    let (_, name) = database_url.rsplit_once('/').unwrap();
    let admin = replica_admin_url();
    let (server, _) = admin.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Wait until the replica has replayed everything the primary has written so far.
async fn caught_up(primary: &str, replica: &str) {
    let written = scalar(primary, "SELECT pg_current_wal_lsn()::text").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replayed = match sqlx::PgConnection::connect(replica).await {
            Ok(mut conn) => {
                sqlx::query_scalar::<_, bool>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                    .bind(&written)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or(false)
            }
            // The database itself may not have reached the replica yet.
            Err(_) => false,
        };
        if replayed {
            return;
        }
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Paused WAL replay on the replica for as long as it lives: the replica then serves a fixed
/// past, which is what tells its reads from the primary's. Resumed on drop, so a failing test
/// leaves a working replica behind.
struct PausedReplay(String);

impl PausedReplay {
    async fn start() -> Self {
        let admin = replica_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query("SELECT pg_wal_replay_pause()")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.ok();
        Self(admin)
    }
}

impl Drop for PausedReplay {
    fn drop(&mut self) {
        let resumed = Command::new("psql")
            .args([&self.0, "-Atqc", "SELECT pg_wal_replay_resume()"])
            .status();
        assert!(
            resumed.is_ok_and(|s| s.success()) || std::thread::panicking(),
            "resume replay on the replica"
        );
    }
}

fn event_rows(page: &Page) -> usize {
    page.table_rows("table.events").len().saturating_sub(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(journeys_on_replica),
    ignore = "TEST_REPLICA_URL is not set: no streaming replica to read from"
)]
async fn auditor_reads_come_from_the_replica_and_audit_rows_land_on_the_primary() {
    let db = fresh_postgres("replica").await;
    run_ok(&db, &["seed"]);
    let replica = on_replica(&db);
    caught_up(&db, &replica).await;
    let (portal, origin) = Instance::start(&db, &[("DATABASE_READ_URL", replica.clone())]).await;
    let record = format!("/clinician/patients/{}", anne(&db).await);
    let mut auditor = Browser::served(&origin, &db);
    auditor.login("auditor").await.assert_ok();
    let larsens = "SELECT COUNT(*) FROM audit_events a JOIN users u ON u.id = a.actor_id \
                   WHERE u.username = 'dr.larsen'";

    let paused = PausedReplay::start().await;
    let mut larsen = Browser::served(&origin, &db);
    larsen.login("dr.larsen").await.assert_ok();
    let refused = larsen.get(&record).await;
    assert_eq!(refused.status, 403);
    override_access(&mut larsen, &record).await.assert_ok();
    let on_primary = count(&db, larsens).await;
    let on_replica = count(&replica, larsens).await;
    assert!(
        on_primary > on_replica,
        "Dr. Larsen's events are on the primary ({on_primary}), not yet on the replica ({on_replica})"
    );
    auditor.get("/audit").await.assert_ok();
    let searched = auditor.post("/audit", &[("actor", "dr.larsen")]).await;
    searched.assert_ok();
    assert_eq!(
        event_rows(&searched) as i64,
        on_replica,
        "the auditor's search reads the replica"
    );
    drop(paused);

    caught_up(&db, &replica).await;
    let searched = auditor.post("/audit", &[("actor", "dr.larsen")]).await;
    assert_eq!(event_rows(&searched) as i64, on_primary.min(50), "replayed");
    let review = scalar(
        &db,
        "SELECT id FROM audit_reviews WHERE id NOT IN (SELECT review_id FROM audit_review_closures)",
    )
    .await;

    // Read your writes: the auditor who closes a review sees it closed on the next page, read
    // from the primary, while another session still reads the (paused) replica.
    let paused = PausedReplay::start().await;
    auditor.get("/audit/reviews").await.assert_ok();
    let closed = auditor
        .post(
            &format!("/audit/reviews/{review}/close"),
            &[("note", "Confirmed with the emergency department.")],
        )
        .await;
    closed.assert_ok();
    let state = |page: &Page| page.select_text(&format!("#r-{review} h2")).join(" ");
    assert!(state(&closed).ends_with("closed"), "{}", state(&closed));
    let mut colleague = Browser::served(&origin, &db);
    colleague.login("auditor").await.assert_ok();
    let stale = colleague.get("/audit/reviews").await;
    assert!(state(&stale).ends_with("open"), "{}", state(&stale));
    drop(paused);
    portal.stop();
}
