//! A stop signal (SIGTERM from systemd or Kubernetes, SIGINT from a terminal) closes the
//! listener, lets the requests in flight finish, and waits for the audit writer to commit what
//! is queued, all within one deadline: a page is only ever shown after its audit event is
//! durable, so nothing acknowledged is lost, and a process that overruns is killed anyway.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use access_control::audit::writer::AuditWriter;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Resolves with the signal's name. The handlers are installed when this is called, not when
/// it is first polled, so a signal that arrives during start-up is not the default kill.
#[cfg(unix)]
pub fn stop_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

#[cfg(not(unix))]
pub fn stop_signal() -> std::io::Result<impl Future<Output = &'static str> + Send> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    })
}

/// Serve until `stop` resolves, then drain as the module says.
pub async fn serve(
    listener: TcpListener,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    audit: AuditWriter,
    stop: impl Future<Output = &'static str> + Send + 'static,
    deadline: Duration,
) {
    let (stopped_tx, mut stopped_at) = oneshot::channel();
    // Boxed rather than pinned on the stack, so that dropping it below really drops the routes.
    let mut server = Box::pin(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let signal = stop.await;
                tracing::info!(
                    signal,
                    "stopping: listener closed, finishing requests in flight"
                );
                let _ = stopped_tx.send(Instant::now());
            })
            .into_future(),
    );
    let give_up = tokio::select! {
        result = &mut server => {
            log_end(result);
            Instant::now() + deadline
        }
        at = &mut stopped_at => {
            let give_up = at.unwrap_or_else(|_| Instant::now()) + deadline;
            match tokio::time::timeout_at(give_up, &mut server).await {
                Ok(result) => log_end(result),
                Err(_) => tracing::warn!("shutdown deadline passed with requests still in flight"),
            }
            give_up
        }
    };
    // The routes' handles to the writer go with the server; then the writer's queue runs dry.
    drop(server);
    match tokio::time::timeout_at(give_up, audit.close()).await {
        Ok(()) => tracing::info!("stopped: every queued audit event committed"),
        Err(_) => tracing::error!("shutdown deadline passed before the audit writer finished"),
    }
}

fn log_end(result: std::io::Result<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "server stopped");
    }
}
