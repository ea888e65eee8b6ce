//! One connection pool for both engines. Queries are written once in portable SQL (`$1`
//! placeholders, which SQLite accepts too) and run through sqlx's `Any` driver; only the
//! migrations differ per engine. Values cross the boundary as text and integers: UUIDs and
//! UTC times as text, flags as integers (see `migrations/`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::DomainError;

mod portable;
mod types;

pub use portable::{PortableQuery, Statement};
pub use types::{Flag, IsoDate, TextColumn, Utc, UuidText};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

pub type Tx = Transaction<'static, Any>;

fn pool_options(engine: Engine, max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // No ping before every checkout: one round trip (on SQLite a hand-off to the driver's
        // thread) for each of a page's connections. A connection the server closed fails its
        // next statement instead, that request answers 503/500 once, and the pool drops it.
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if engine == Engine::Sqlite {
                    // sqlx leaves new databases in rollback-journal mode; acknowledged writes
                    // must survive power loss, hence WAL with synchronous=FULL.
                    for pragma in SQLITE_PRAGMAS {
                        conn.execute(*pragma).await?;
                    }
                }
                Ok(())
            })
        })
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

impl Db {
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, DomainError> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url).ok_or(DomainError::UnsupportedDatabaseUrl)?;
        let url = match engine {
            Engine::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&url)?;
        let max_connections = match engine {
            // One writer at a time is SQLite's rule; a few readers beside it are plenty.
            Engine::Sqlite => settings.max_connections.min(8),
            Engine::Postgres => settings.max_connections,
        };
        let pool = pool_options(engine, max_connections, settings.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool, engine })
    }

    /// A pool of one connection of its own to the same database, for a task that must never
    /// wait behind the requests it serves (the audit writer: requests hold their read
    /// transactions while they wait for it).
    pub async fn dedicated(&self) -> Result<Self, DomainError> {
        let options = (*self.pool.connect_options()).clone();
        let pool = pool_options(self.engine, 1, Duration::from_secs(30))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            engine: self.engine,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), DomainError> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATIONS,
            Engine::Postgres => &POSTGRES_MIGRATIONS,
        };
        if self.is_up_to_date(migrator).await {
            return Ok(());
        }
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Whether every embedded migration is applied. Checked first so that a portal connecting
    /// as the unprivileged application role (no DDL rights) starts on a schema the owner
    /// migrated; any doubt (no table yet, an error) means running the migrator.
    async fn is_up_to_date(&self, migrator: &Migrator) -> bool {
        let applied: Result<Vec<i64>, _> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await;
        applied.is_ok_and(|applied| migrator.iter().all(|m| applied.contains(&m.version)))
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first cannot upgrade once another
    /// connection has committed, and busy_timeout does not help with that.
    pub async fn begin_write(&self) -> Result<Tx, DomainError> {
        let tx = match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    pub async fn begin_read(&self) -> Result<Tx, DomainError> {
        Ok(self.pool.begin().await?)
    }

    pub async fn is_ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Fixed-width UTC text, as stored (see `Utc`).
pub fn ts(t: OffsetDateTime) -> String {
    Utc(t).to_string()
}

pub fn parse_ts(s: &str) -> Result<OffsetDateTime, DomainError> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|_| DomainError::Corrupt(format!("time {s:?}")))
}

pub fn date_text(d: Date) -> String {
    IsoDate(d).to_string()
}

pub fn parse_date(s: &str) -> Result<Date, DomainError> {
    let format = format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).map_err(|_| DomainError::Corrupt(format!("date {s:?}")))
}
