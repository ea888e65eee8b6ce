//! The running portal: shared state, the router with every route in one list, and the layers
//! every response passes (sessions, security headers, body limit, tracing).

use std::net::SocketAddr;
use std::sync::Arc;

use access_control::audit::writer::AuditWriter;
use access_control::Gate;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use records_domain::{Db, PoolSettings};
use time::OffsetDateTime;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::auth::csrf::{self, LoginKey};
use crate::auth::throttle::{AddressThrottle, AnonymousAudit};
use crate::auth::{self, hashing::Hasher, login, CurrentUser};
use crate::config::Config;
use crate::error::AppError;
use crate::routes;
use crate::sessions::Store;

/// Form posts are small; anything larger is refused before it is read.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// A streaming replica for read-only work that may lag a little (the auditor's searches,
    /// statistics and exports); the primary when no DATABASE_READ_URL is configured.
    pub replica: Db,
    pub config: Arc<Config>,
    pub hasher: Hasher,
    /// Sign-in attempts per client address.
    pub throttle: AddressThrottle,
    /// FHIR calls without a valid bearer token, per client address.
    pub fhir_throttle: AddressThrottle,
    /// Which events of unauthenticated traffic reach the audit log.
    pub anonymous_audit: AnonymousAudit,
    /// Signs the sign-in form's CSRF tokens.
    pub login_key: LoginKey,
    /// Group-commits the audit events of reads.
    pub audit: AuditWriter,
}

/// How long after a change a user's read-only pages read from the primary instead of the
/// replica, so that their next page shows what they just did although the replica may not
/// have replayed it yet. Streaming replicas on one network stay well under a second behind;
/// the margin covers a busy moment.
pub const READ_YOUR_WRITES: std::time::Duration = std::time::Duration::from_secs(15);
const WROTE_AT: &str = "wrote_at";

impl AppState {
    /// Where `user`'s read-only work goes: the replica, or the primary within
    /// `READ_YOUR_WRITES` of a change they made (see `note_write`).
    pub async fn reader_for(&self, user: &CurrentUser) -> &Db {
        let wrote_at = user.session.get::<i64>(WROTE_AT).await.ok().flatten();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match wrote_at {
            Some(at) if now - at < READ_YOUR_WRITES.as_secs() as i64 => &self.db,
            _ => &self.replica,
        }
    }

    /// Remember in `user`'s session, which every instance reads, that they just changed
    /// something the replica serves.
    pub async fn note_write(&self, user: &CurrentUser) -> Result<(), AppError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        Ok(user.session.insert(WROTE_AT, now).await?)
    }

    pub fn gate(&self) -> Gate<'_> {
        Gate {
            db: &self.db,
            settings: &self.config.policy,
            audit: &self.audit,
        }
    }
}

pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    let settings = PoolSettings {
        max_connections: config.db_max_connections,
        acquire_timeout: config.db_acquire_timeout,
    };
    let db = Db::connect(&config.database_url, &settings).await?;
    db.migrate().await?;
    Ok(db)
}

/// Every route of the portal, without state or layers: the authorization matrix test reads
/// the list from here, so a new route cannot go untested.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(start))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/static/portal.css", get(routes::health::stylesheet))
        .route("/static/favicon.svg", get(routes::health::favicon))
        .route("/login", get(login::login_page).post(login::login))
        .route(
            "/login/second-factor",
            get(login::second_factor_page).post(login::second_factor),
        )
        .route("/logout", post(login::logout))
        .route(
            "/account/password",
            get(login::password_page).post(login::change_password),
        )
        .route("/account/security", get(login::security_page))
        .route("/account/totp/start", post(login::start_totp))
        .route("/account/totp/confirm", post(login::confirm_totp))
        .merge(routes::patient::routes())
        .merge(routes::clinician::routes())
        .merge(routes::admin::routes())
        .merge(routes::audit::routes())
        .merge(routes::checkpoints::routes())
        .merge(crate::fhir::routes())
        .route(
            crate::fhir::smart::TOKEN_PATH,
            post(crate::fhir::smart::token),
        )
        .merge(crate::transparency::routes::routes())
}

pub fn router(state: AppState, store: Store) -> Router {
    let secure = state.config.secure_cookies;
    let sessions = SessionManagerLayer::new(store)
        // The __Host- prefix makes browsers refuse the cookie unless Secure, host-only, path=/.
        .with_name(if secure { "__Host-portal" } else { "portal" })
        .with_secure(secure)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(auth::IDLE_TIMEOUT));
    routes()
        .fallback(not_found)
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // A bug must cost one request its answer, never the connection or the worker.
        .layer(CatchPanicLayer::custom(|_| {
            AppError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        // Every log line of a request carries its id, and the response tells it to the caller
        // (and to support, who can then find the request in the logs).
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(crate::ops::metrics::track))
        .with_state(state)
}

async fn start(session: Session, State(state): State<AppState>) -> Result<Response, AppError> {
    let Some(signed_in) = auth::signed_in(&session).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let mut conn = state.db.pool().acquire().await?;
    let role = access_control::accounts::by_id(&mut conn, signed_in.user_id)
        .await?
        .map(|u| u.role);
    Ok(Redirect::to(role.map(auth::home_for).unwrap_or("/login")).into_response())
}

/// The span of one request: method, route path and the request's id (the caller's
/// `x-request-id` when a proxy in front set one, else a fresh UUID).
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %request.method(), path = request.uri().path(), request_id = id)
}

async fn not_found() -> AppError {
    AppError::not_found()
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Health data must not linger in shared or browser caches.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// Start serving on the configured address; returns the bound address and the server task,
/// which ends after a graceful shutdown (`ops::shutdown`).
pub async fn spawn(
    config: Config,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>, Db)> {
    // Before anything else: a SIGTERM that arrives while starting must not be a plain kill.
    let stop = crate::ops::shutdown::stop_signal()?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let deadline = config.operations.shutdown_timeout;
    let metrics_bind = config.operations.metrics_bind;
    let portal = assemble(config).await?;
    if let Some(bind) = metrics_bind {
        let at = crate::ops::metrics::serve(bind, portal.db.clone(), portal.replica).await?;
        tracing::info!(%at, "metrics on /metrics");
    }
    let app = portal
        .router
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(crate::ops::shutdown::serve(
        listener,
        app,
        portal.audit,
        stop,
        deadline,
    ));
    Ok((addr, server, portal.db))
}

/// The portal's router over its own database and state, not yet bound to an address: tests
/// call it in-process, `spawn` serves it.
pub async fn build(config: Config) -> anyhow::Result<(Router, Db)> {
    let portal = assemble(config).await?;
    Ok((portal.router, portal.db))
}

/// What `spawn` needs beside the router: the pools, and the audit writer to flush at shutdown.
struct Assembled {
    router: Router,
    db: Db,
    replica: Db,
    audit: AuditWriter,
}

async fn assemble(config: Config) -> anyhow::Result<Assembled> {
    let db = connect(&config).await?;
    let store = Store::connect(&config.database_url, db.engine()).await?;
    store.spawn_cleanup();
    let replica = match &config.database_read_url {
        Some(url) => {
            let settings = PoolSettings {
                max_connections: config.db_max_connections,
                acquire_timeout: config.db_acquire_timeout,
            };
            Db::connect(url, &settings).await?
        }
        None => db.clone(),
    };
    let login_key = {
        let mut conn = db.pool().acquire().await?;
        let stored = access_control::accounts::server_key(
            &mut conn,
            csrf::LOGIN_KEY_NAME,
            &LoginKey::generate_hex(),
        )
        .await?;
        LoginKey::from_hex(&stored)?
    };
    let audit = AuditWriter::start(&db).await?;
    crate::transparency::publisher::spawn(db.clone(), config.log.clone());
    let state = AppState {
        audit: audit.clone(),
        db: db.clone(),
        replica: replica.clone(),
        config: Arc::new(config),
        hasher: Hasher::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        ),
        throttle: AddressThrottle::default(),
        fhir_throttle: AddressThrottle::default(),
        anonymous_audit: AnonymousAudit::default(),
        login_key,
    };
    Ok(Assembled {
        router: router(state, store),
        db,
        replica,
        audit,
    })
}

/// Serve `app` on `bind` without signal handling, with each connection's peer address as
/// `ConnectInfo`: for tests that need a real socket beside the in-process router.
pub async fn serve(
    bind: SocketAddr,
    app: Router,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok((addr, server))
}
