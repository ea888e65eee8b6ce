//! Password hashing off the async runtime, with bounded concurrency: a flood of logins queues
//! here (and is answered 503 after a short wait) instead of starving page views.

use std::sync::Arc;
use std::time::Duration;

use access_control::accounts;
use tokio::sync::Semaphore;

use crate::error::AppError;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    pub async fn verify(&self, hash: String, password: String) -> Result<bool, AppError> {
        self.run(move || Ok(accounts::verify_password(&hash, &password)))
            .await
    }

    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.run(move || accounts::hash_password(&password).map_err(AppError::from))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let permit =
            tokio::time::timeout(Duration::from_secs(5), self.permits.clone().acquire_owned())
                .await
                .map_err(|_| AppError::from(crate::problem::Problem::Overloaded))?
                .map_err(AppError::internal)?;
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(AppError::internal)?;
        result
    }
}
