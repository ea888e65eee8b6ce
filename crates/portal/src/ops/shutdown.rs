//! A stop signal (SIGTERM from systemd or Kubernetes, SIGINT from a terminal) closes the
//! listener, lets the requests in flight finish, and waits for the audit writer to commit what
//! is queued, all within one deadline: a page is only ever shown after its audit event is
//! durable, so nothing acknowledged is lost, and a process that overruns is killed anyway.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use access_control::audit::writer::AuditWriter;
use axum::extract::connect_info::IntoMakeServiceWithConnectInfo;
use axum::serve::{Listener, ListenerExt};
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
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

/// How long connections accepted before the listener closed have to send their request.
const LINGER: Duration = Duration::from_millis(500);

/// Serve until `stop` resolves, then drain as the module says.
pub async fn serve(
    listener: TcpListener,
    app: IntoMakeServiceWithConnectInfo<Router, SocketAddr>,
    audit: AuditWriter,
    stop: impl Future<Output = &'static str> + Send + 'static,
    deadline: Duration,
) {
    let listener = match Draining::new(listener) {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(error = %e, "listener unusable"),
    };
    let stopping = listener.stop.clone();
    let drained = listener.drained.subscribe();
    let (stopped_tx, mut stopped_at) = oneshot::channel();
    tokio::spawn(async move {
        let signal = stop.await;
        tracing::info!(
            signal,
            "stopping: listener closed, finishing requests in flight"
        );
        let _ = stopped_tx.send(Instant::now());
        stopping.send_replace(true);
    });
    // Boxed rather than pinned on the stack, so that dropping it below really drops the routes.
    let mut server = Box::pin(
        axum::serve(listener.tap_io(|_| ()), app)
            .with_graceful_shutdown(async move {
                let mut drained = drained;
                let _ = drained.wait_for(|done| *done).await;
                // A connection accepted just now has not sent its request yet; hyper's graceful
                // shutdown would close it as idle.
                tokio::time::sleep(LINGER).await;
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

/// The listener that, once told to stop, hands over the connections the kernel has already
/// completed into its backlog and then closes the socket, so that later clients are refused at
/// connect. Closing a listening socket resets every connection still queued in it: those
/// clients would see a dropped connection instead of an answer. So before the backlog is
/// emptied, a socket filter makes the kernel ignore new handshakes: a client that connects in
/// the moment between the last accept and the close retries its SYN and then finds the port
/// closed, instead of having its connection reset after it was established.
struct Draining {
    inner: Option<TcpListener>,
    /// The same socket, non-blocking, to ask the backlog directly: the async listener only
    /// sees a queued connection once the reactor has noticed it.
    backlog: Option<std::net::TcpListener>,
    addr: SocketAddr,
    /// Set once the filter is attached.
    refusing: bool,
    stop: watch::Sender<bool>,
    drained: watch::Sender<bool>,
}

impl Draining {
    fn new(inner: TcpListener) -> io::Result<Self> {
        let addr = inner.local_addr()?;
        let std = inner.into_std()?;
        let backlog = std.try_clone()?;
        backlog.set_nonblocking(true)?;
        Ok(Self {
            inner: Some(TcpListener::from_std(std)?),
            backlog: Some(backlog),
            addr,
            refusing: false,
            stop: watch::Sender::new(false),
            drained: watch::Sender::new(false),
        })
    }

    /// Drop every packet addressed to the listening socket, so that no further connection is
    /// completed into its backlog. Established connections are separate sockets and unaffected.
    fn refuse_new_handshakes(&self) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(backlog) = &self.backlog {
            // Classic BPF: one instruction, "return 0" (BPF_RET | BPF_K), keeps no byte of any packet.
            const DROP_ALL: [socket2::SockFilter; 1] = [socket2::SockFilter::new(0x06, 0, 0, 0)];
            if let Err(e) = socket2::SockRef::from(backlog).attach_filter(&DROP_ALL) {
                tracing::warn!(error = %e, "could not stop new handshakes before closing");
            }
        }
    }

    fn queued(&self) -> Option<(TcpStream, SocketAddr)> {
        let backlog = self.backlog.as_ref()?;
        loop {
            match backlog.accept() {
                Ok((stream, addr)) => match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => return Some((stream, addr)),
                    Err(e) => tracing::warn!(error = %e, "queued connection unusable"),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a queued connection failed");
                    return None;
                }
            }
        }
    }

    /// Close both handles of the listening socket: from now on connecting is refused.
    fn close(&mut self) {
        self.inner = None;
        self.backlog = None;
        self.drained.send_replace(true);
    }
}

impl Listener for Draining {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut stop = self.stop.subscribe();
        loop {
            if *stop.borrow_and_update() {
                if !self.refusing {
                    self.refuse_new_handshakes();
                    self.refusing = true;
                }
                if let Some(queued) = self.queued() {
                    return queued;
                }
                self.close();
            }
            let Some(inner) = &self.inner else {
                return std::future::pending().await;
            };
            tokio::select! {
                accepted = inner.accept() => match accepted {
                    Ok(connection) => return connection,
                    // Out of file descriptors and the like: wait rather than spin, as axum does.
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = stop.changed() => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

fn log_end(result: std::io::Result<()>) {
    if let Err(e) = result {
        tracing::error!(error = %e, "server stopped");
    }
}
