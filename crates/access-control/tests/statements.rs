//! Every SQL statement of the stores (records and access control) prepares on both engines.
//! `query!` cannot check queries that run through sqlx's `Any`, so without this a misspelt
//! column would show only when a page first runs the query. Dynamic queries are listed with
//! every clause switched on.

use records_domain::db::Statement;
use records_domain::{Db, PoolSettings};
use sqlx::Executor;

fn every_statement() -> Vec<Statement> {
    let mut all = records_domain::store::statements();
    all.extend(access_control::statements());
    all
}

/// The statements that do not prepare on a freshly migrated database, with the engine's words.
async fn unpreparable(url: &str) -> Vec<String> {
    let db = Db::connect(url, &PoolSettings::default())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    let mut failures = Vec::new();
    for statement in every_statement() {
        if let Err(e) = db.pool().prepare(statement.sql.as_ref()).await {
            failures.push(format!("{}: {e}", statement.name));
        }
    }
    db.close().await;
    failures
}

#[tokio::test]
async fn every_statement_prepares_on_sqlite() {
    let file = std::env::temp_dir().join(format!("statements-{}.db", uuid::Uuid::new_v4()));
    let failures = unpreparable(&format!("sqlite://{}", file.display())).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_statement_prepares_on_postgres() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true: TEST_DATABASE_URL must be set, the PostgreSQL check cannot be skipped"
        );
        eprintln!("TEST_DATABASE_URL not set: PostgreSQL variant skipped");
        return;
    };
    let (server, _) = admin_url
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL names a database");
    let name = format!("portal_test_statements_{}", std::process::id());
    let admin = Db::connect(&admin_url, &PoolSettings::default())
        .await
        .expect("connect to TEST_DATABASE_URL");
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    admin.pool().execute(drop.as_str()).await.expect("drop");
    let create = format!("CREATE DATABASE {name}");
    admin.pool().execute(create.as_str()).await.expect("create");
    let failures = unpreparable(&format!("{server}/{name}")).await;
    admin.pool().execute(drop.as_str()).await.expect("drop");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
