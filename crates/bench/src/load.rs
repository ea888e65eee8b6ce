//! `portal-bench load`: migrate with the portal's own migrations, then bulk-load the synthetic
//! population. SQLite takes multi-row INSERTs in one large transaction per chunk of patients;
//! PostgreSQL takes COPY (through sqlx's PostgreSQL driver: the `Any` driver the portal uses
//! cannot COPY). The secondary indexes of the bulk tables are dropped for the load and built
//! once at the end, from their definitions as the migrations left them.
//!
//! One thread generates chunks while the database writes the previous one. The load runs with
//! the loader's own durability settings (SQLite `synchronous=OFF`, PostgreSQL
//! `synchronous_commit=off`), which are session settings: the portal's are untouched. A load
//! that stops half-way leaves an unusable database; load into a fresh one.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use records_domain::{Db, Engine, PoolSettings};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};

use crate::population::{Chunk, Generator, Spec, BULK_TABLES, PASSWORD};
use crate::rows::{Batch, Val};

/// Patients per chunk: one transaction on SQLite, one COPY per table on PostgreSQL.
const CHUNK: u64 = 2_000;
/// SQLite's limit on parameters per statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
const SQLITE_MAX_PARAMETERS: usize = 32_766;
const COPY_BUFFER: usize = 4 << 20;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub engine: String,
    pub spec: Spec,
    pub rows: u64,
    /// Writing the rows (generation overlaps it).
    pub rows_seconds: f64,
    /// Building the secondary indexes and updating planner statistics afterwards.
    pub index_seconds: f64,
    pub total_seconds: f64,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loaded {} patients ({} rows) into {} in {:.1} s: rows {:.1} s ({:.0} rows/s), indexes {:.1} s",
            self.spec.patients,
            self.rows,
            self.engine,
            self.total_seconds,
            self.rows_seconds,
            self.rows as f64 / self.rows_seconds.max(1e-9),
            self.index_seconds
        )
    }
}

/// How many patients the database at `url` holds, after migrating it (0 for a new database).
pub async fn patients_in(url: &str) -> anyhow::Result<i64> {
    let db = Db::connect(url, &PoolSettings::default())
        .await
        .with_context(|| format!("connect to {}", redact(url)))?;
    db.migrate().await.context("migrate")?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients")
        .fetch_one(db.pool())
        .await?;
    db.close().await;
    Ok(n)
}

/// Migrate and load `spec` into the empty database at `url`.
pub async fn load(url: &str, spec: &Spec) -> anyhow::Result<LoadReport> {
    let engine = Engine::from_url(url)
        .context("--database-url: use sqlite://FILE or postgres://USER@HOST/DB")?;
    let started = Instant::now();
    {
        let db = Db::connect(url, &PoolSettings::default()).await?;
        db.migrate().await.context("migrate")?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(db.pool())
            .await?;
        db.close().await;
        anyhow::ensure!(
            users == 0,
            "{} already has users: load into a fresh database",
            redact(url)
        );
    }
    let hash =
        tokio::task::spawn_blocking(|| access_control::accounts::hash_password(PASSWORD)).await??;
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000;
    let generator = Arc::new(Generator::new(spec.clone(), hash, now as i64));
    let mut writer = Writer::connect(url, engine).await?;
    let lifted = writer.lift_constraints().await?;

    let mut rows = writer.write(generator.staff()).await?;
    let (sender, chunks) = tokio::sync::mpsc::channel::<Chunk>(2);
    let producer = {
        let generator = generator.clone();
        let patients = spec.patients;
        std::thread::spawn(move || {
            let mut first = 0;
            while first < patients {
                let last = (first + CHUNK).min(patients);
                if sender
                    .blocking_send(generator.patients(first..last))
                    .is_err()
                {
                    return;
                }
                first = last;
            }
        })
    };
    // SQLite has one writer; PostgreSQL takes two COPYs at once, one backend per core.
    let mut writers = vec![writer];
    if engine == Engine::Postgres {
        writers.push(Writer::connect(url, engine).await?);
    }
    let chunks = Arc::new(tokio::sync::Mutex::new(chunks));
    let progress = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut writer| {
            let (chunks, progress) = (chunks.clone(), progress.clone());
            tokio::spawn(async move {
                let mut rows = 0;
                loop {
                    let next = chunks.lock().await.recv().await;
                    let Some(chunk) = next else { break };
                    rows += writer.write(chunk).await?;
                    progress.fetch_add(CHUNK, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>((writer, rows))
            })
        })
        .collect();
    let reporter = {
        let (progress, patients) = (progress.clone(), spec.patients);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "  {} of {patients} patients, {:.0} s",
                    progress.load(Ordering::Relaxed).min(patients),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut writers = Vec::new();
    for task in tasks {
        let (writer, written) = task.await??;
        rows += written;
        writers.push(writer);
    }
    reporter.abort();
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the row generator panicked"))?;
    let mut writer = writers.swap_remove(0);
    for extra in writers {
        extra.close().await?;
    }
    rows += writer.write(generator.system_chain()).await?;
    let rows_seconds = started.elapsed().as_secs_f64();
    writer.restore(&lifted).await?;
    // The loaded history bypassed the audit append, so it joins the transparency log's queue
    // here; the portal's publisher moves it into the tree once it runs.
    writer
        .execute(
            "INSERT INTO audit_log_queue (event_id) SELECT id FROM audit_events e \
             WHERE NOT EXISTS (SELECT 1 FROM audit_log_leaves l WHERE l.event_id = e.id) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .await
        .context("queue the loaded audit history for the transparency log")?;
    writer
        .execute(access_control::audit::statistics::REBUILD)
        .await
        .context("count the loaded audit history into the statistics rollup")?;
    writer.finish().await?;
    let total_seconds = started.elapsed().as_secs_f64();
    Ok(LoadReport {
        engine: match engine {
            Engine::Sqlite => "SQLite".into(),
            Engine::Postgres => "PostgreSQL".into(),
        },
        spec: spec.clone(),
        rows,
        rows_seconds,
        index_seconds: total_seconds - rows_seconds,
        total_seconds,
    })
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..scheme + 3 + colon], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// A constraint or index lifted for the load, and the statement that puts it back.
struct Lifted {
    name: String,
    restore: String,
}

enum Writer {
    Sqlite {
        conn: SqliteConnection,
        statements: HashMap<(&'static str, usize), String>,
    },
    Postgres(PgConnection),
}

impl Writer {
    async fn connect(url: &str, engine: Engine) -> anyhow::Result<Self> {
        match engine {
            Engine::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)?
                    // The load is redone from scratch if it fails; the portal sets its own
                    // durable settings on every connection it opens.
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Off)
                    .foreign_keys(false)
                    .pragma("cache_size", "-1000000")
                    .pragma("temp_store", "memory");
                Ok(Self::Sqlite {
                    conn: SqliteConnection::connect_with(&options).await?,
                    statements: HashMap::new(),
                })
            }
            Engine::Postgres => {
                let mut conn = PgConnection::connect(url).await?;
                conn.execute("SET synchronous_commit = off").await?;
                conn.execute("SET maintenance_work_mem = '512MB'").await?;
                Ok(Self::Postgres(conn))
            }
        }
    }

    /// Drop the secondary indexes of the bulk tables (not those behind primary keys and
    /// UNIQUE constraints) and, on PostgreSQL, their foreign keys, whose row-by-row checks
    /// would lock every referenced patient once per row; return how to put them back. (SQLite
    /// checks no foreign keys on the loader's connection.)
    async fn lift_constraints(&mut self) -> anyhow::Result<Vec<Lifted>> {
        let tables = BULK_TABLES
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut lifted = Vec::new();
        match self {
            Self::Sqlite { conn, .. } => {
                let found: Vec<(String, String)> = sqlx::query_as(&format!(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                     AND tbl_name IN ({tables}) ORDER BY name"
                ))
                .fetch_all(&mut *conn)
                .await?;
                for (name, restore) in found {
                    conn.execute(format!("DROP INDEX {name}").as_str()).await?;
                    lifted.push(Lifted { name, restore });
                }
            }
            Self::Postgres(conn) => {
                let indexes: Vec<(String, String)> = sqlx::query_as(&format!(
                    "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
                     WHERE i.schemaname = current_schema() AND i.tablename IN ({tables}) \
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \
                     ORDER BY i.indexname"
                ))
                .fetch_all(&mut *conn)
                .await?;
                for (name, restore) in indexes {
                    conn.execute(format!("DROP INDEX {name}").as_str()).await?;
                    lifted.push(Lifted { name, restore });
                }
                let keys: Vec<(String, String, String)> = sqlx::query_as(&format!(
                    "SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid) \
                     FROM pg_constraint c WHERE c.contype = 'f' \
                     AND c.conrelid::regclass::text IN ({tables}) ORDER BY c.conname"
                ))
                .fetch_all(&mut *conn)
                .await?;
                for (table, name, definition) in keys {
                    conn.execute(format!("ALTER TABLE {table} DROP CONSTRAINT {name}").as_str())
                        .await?;
                    lifted.push(Lifted {
                        restore: format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"),
                        name,
                    });
                }
            }
        }
        Ok(lifted)
    }

    /// Build the lifted indexes, then check and restore the foreign keys.
    async fn restore(&mut self, lifted: &[Lifted]) -> anyhow::Result<()> {
        for item in lifted {
            self.execute(&item.restore)
                .await
                .with_context(|| format!("restore {}", item.name))?;
        }
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { conn, .. } => conn.close().await?,
            Self::Postgres(conn) => conn.close().await?,
        }
        Ok(())
    }

    async fn execute(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { conn, .. } => {
                conn.execute(sql).await?;
            }
            Self::Postgres(conn) => {
                conn.execute(sql).await?;
            }
        }
        Ok(())
    }

    /// Write a chunk in one transaction; returns the number of rows.
    async fn write(&mut self, chunk: Chunk) -> anyhow::Result<u64> {
        let mut rows = 0;
        match self {
            Self::Sqlite { conn, statements } => {
                let mut tx = conn.begin().await?;
                for batch in chunk {
                    rows += batch.rows() as u64;
                    insert_sqlite(&mut tx, statements, batch).await?;
                }
                tx.commit().await?;
            }
            Self::Postgres(conn) => {
                let mut tx = conn.begin().await?;
                for batch in chunk {
                    rows += batch.rows() as u64;
                    copy_postgres(&mut tx, &batch).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(rows)
    }

    /// Statistics for the planner. PostgreSQL's autovacuum would gather them soon after a
    /// load; a VACUUM now also sets the visibility map, so that the first measurements do not
    /// depend on when autovacuum ran. SQLite gathers none unless asked, and the portal does not
    /// ask, so neither does the loader: the database is measured as the portal would run it.
    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::Sqlite { mut conn, .. } => {
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
                conn.close().await?;
            }
            Self::Postgres(mut conn) => {
                conn.execute("VACUUM ANALYZE").await?;
                conn.close().await?;
            }
        }
        Ok(())
    }
}

fn insert_statement(table: &str, columns: &[&str], rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns.len()].join(","));
    format!(
        "INSERT INTO {table} ({}) VALUES {}",
        columns.join(","),
        vec![row; rows].join(",")
    )
}

async fn insert_sqlite(
    conn: &mut SqliteConnection,
    statements: &mut HashMap<(&'static str, usize), String>,
    batch: Batch,
) -> anyhow::Result<()> {
    let width = batch.columns.len();
    let per_statement = (SQLITE_MAX_PARAMETERS / width).min(1_000);
    let mut left = batch.rows();
    let mut values = batch.values.into_iter();
    while left > 0 {
        let n = left.min(per_statement);
        let sql = statements
            .entry((batch.table, n))
            .or_insert_with(|| insert_statement(batch.table, batch.columns, n));
        let mut query = sqlx::query(sql.as_str());
        for value in values.by_ref().take(n * width) {
            query = match value {
                Val::Null => query.bind(None::<String>),
                Val::Int(v) => query.bind(v),
                Val::Real(v) => query.bind(v),
                Val::Static(v) => query.bind(v),
                Val::Text(v) => query.bind(v),
                other => query.bind(other.to_text()),
            };
        }
        query
            .execute(&mut *conn)
            .await
            .with_context(|| format!("insert into {}", batch.table))?;
        left -= n;
    }
    Ok(())
}

async fn copy_postgres(conn: &mut PgConnection, batch: &Batch) -> anyhow::Result<()> {
    if batch.values.is_empty() {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {} ({}) FROM STDIN",
            batch.table,
            batch.columns.join(",")
        ))
        .await?;
    let mut buffer = Vec::with_capacity(COPY_BUFFER + 4096);
    for row in batch.values.chunks(batch.columns.len()) {
        for (n, value) in row.iter().enumerate() {
            if n > 0 {
                buffer.push(b'\t');
            }
            value.write_copy(&mut buffer);
        }
        buffer.push(b'\n');
        if buffer.len() >= COPY_BUFFER {
            copy.send(std::mem::take(&mut buffer)).await?;
            buffer.reserve(COPY_BUFFER + 4096);
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer).await?;
    }
    copy.finish()
        .await
        .with_context(|| format!("COPY into {}", batch.table))?;
    Ok(())
}
