//! Server-side sessions in the portal's own database (tower-sessions' SQL stores), so that a
//! logout or an idle timeout ends the session everywhere, and several portal instances share them.

use async_trait::async_trait;
use records_domain::Engine;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
use tower_sessions_sqlx_store::sqlx::sqlite::SqlitePoolOptions;
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    pub async fn connect(url: &str, engine: Engine) -> Result<Self, sqlx::Error> {
        let store = match engine {
            Engine::Sqlite => {
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect(url)
                    .await?;
                let store = SqliteStore::new(pool);
                store.migrate().await?;
                Self::Sqlite(store)
            }
            Engine::Postgres => {
                let pool = PgPoolOptions::new().max_connections(8).connect(url).await?;
                // The schema owner's migration creates the table; the application role may not
                // run DDL, so a failed create is fine as long as the table is there to use.
                let usable = sqlx_store_check(&pool).await;
                let store = PostgresStore::new(pool);
                if let Err(e) = store.migrate().await {
                    if !usable {
                        return Err(e);
                    }
                }
                Self::Postgres(store)
            }
        };
        Ok(store)
    }

    /// Delete expired sessions every few minutes, for as long as the server runs.
    pub fn spawn_cleanup(&self) {
        let store = self.clone();
        tokio::spawn(async move {
            let period = tokio::time::Duration::from_secs(300);
            let result = match store {
                Store::Sqlite(s) => s.continuously_delete_expired(period).await,
                Store::Postgres(s) => s.continuously_delete_expired(period).await,
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "session cleanup stopped");
            }
        });
    }
}

async fn sqlx_store_check(pool: &tower_sessions_sqlx_store::sqlx::PgPool) -> bool {
    tower_sessions_sqlx_store::sqlx::query("SELECT 1 FROM tower_sessions.session LIMIT 1")
        .fetch_optional(pool)
        .await
        .is_ok()
}

#[async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.create(record).await,
            Self::Postgres(s) => s.create(record).await,
        }
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.save(record).await,
            Self::Postgres(s) => s.save(record).await,
        }
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sqlite(s) => s.load(id).await,
            Self::Postgres(s) => s.load(id).await,
        }
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete(id).await,
            Self::Postgres(s) => s.delete(id).await,
        }
    }
}
