//! The application: shared state, the router with its layers, binding and graceful shutdown.

mod edge;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use rand::RngCore as _;
use tokio::net::TcpListener;
use tower_http::{
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};
use tower_sessions::{SessionManagerLayer, cookie::SameSite};
use url::Url;

use crate::{
    auth::{Auth, AuthParts, password::PasswordHasherPool, session_store},
    base::Base,
    billing::{self, Billing, BillingParts, catalog::Catalog, stripe::StripeApi},
    clock::Clock,
    config::{Config, ConfigError},
    db::Db,
    email::{Mail, MailParts},
    error::AppError,
    web,
};

/// Body limit for `/api/` and forms (docs/api.md).
pub const BODY_LIMIT: usize = 64 * 1024;
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use crate::state::{AppState, Shared};

/// Why the state is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StartUp {
    /// To serve, or for a command that acts like the server.
    Serving,
    /// To compare the stored state with Stripe (`tollgate stripe sync`).
    Reconciling,
}

impl AppState {
    /// Opens and migrates the database, loads the catalog and connects to Stripe (or starts the
    /// simulator). `port` is the bound port, for the default base URL.
    pub async fn build(config: Config, port: u16) -> anyhow::Result<Self> {
        let catalog = load_catalog(&config)?;
        Self::build_with(config, catalog, port).await
    }

    /// [`AppState::build`] with a catalog already loaded (`catalog`'s prices are not yet resolved
    /// to Stripe ids).
    pub async fn build_with(config: Config, catalog: Catalog, port: u16) -> anyhow::Result<Self> {
        Self::build_as(config, catalog, port, StartUp::Serving).await
    }

    /// [`AppState::build_with`] for `purpose`: `tollgate stripe sync` leaves the stored plans as
    /// they are, so that it reports (and, unless a dry run, repairs) what does not follow the
    /// catalog instead of the start-up quietly doing it.
    pub(crate) async fn build_as(
        config: Config,
        catalog: Catalog,
        port: u16,
        purpose: StartUp,
    ) -> anyhow::Result<Self> {
        let db = Db::connect(config.database_url.expose()).await?;
        db.migrate().await?;
        let base_url = match &config.base_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!("http://127.0.0.1:{port}/"))?,
        };
        let mut allowed_origins = vec![base_url.origin().ascii_serialization()];
        allowed_origins.extend(config.allowed_origins.iter().cloned());
        if config.mode == crate::config::Mode::Development {
            allowed_origins.push(format!("http://localhost:{port}"));
            allowed_origins.push(format!("http://127.0.0.1:{port}"));
        }
        let csrf_key = shared_secret(&db, "csrf_key").await?;
        let device_key = shared_secret(&db, "device_key").await?;
        let clock = Clock::new();
        let signing = crate::auth::signing::Keys::load(
            &db,
            config.jwt_signing_key.as_ref().map(|k| k.expose()),
            config.access_token_secs,
        )
        .await?;
        let mut catalog = catalog;
        let webhook_url = format!("{base_url}webhooks/stripe");
        let (stripe, sim) = if StripeApi::wants_simulator(&config) {
            crate::simulated::start(&config, &clock, &mut catalog, &webhook_url).await?
        } else {
            (StripeApi::connect(&config, &mut catalog).await?, None)
        };
        let mail_transport =
            crate::email::Transport::from_config(config.smtp_url.as_ref().map(|s| s.expose()))?;
        let hasher = PasswordHasherPool::new(config.argon2);
        let cache = Arc::new(crate::cache::Cache::new(config.cache_entries));
        crate::cache::push::start(&cache, &db, config.database_url.expose());
        let base = Base {
            config,
            db,
            cache,
            clock,
            base_url,
            allowed_origins,
            templates: web::templates(),
        };
        crate::auth::users::renormalise_addresses(&base).await?;
        // Plans follow prices: stored subscriptions take the plan this catalog gives their price.
        if purpose == StartUp::Serving {
            crate::billing::subscriptions::remap_plans(&base, &catalog).await?;
        }
        let mail = Mail::new(MailParts {
            base,
            mail_transport,
            mail_wakeup: tokio::sync::Notify::new(),
        });
        let passkeys = crate::auth::passkeys::RelyingParty::for_base(
            &mail.base_url,
            mail.config.base_url.is_some(),
            mail.config.mode == crate::config::Mode::Development,
            port,
            &mail.config.product_name,
        );
        if passkeys.is_none() {
            tracing::warn!("passkeys are off: TOLLGATE_BASE_URL is on an IP address");
        }
        let social = crate::auth::social::Providers::from_config(&mail.config)?;
        let auth = Auth::new(AuthParts {
            mail,
            hasher,
            device_key,
            signing,
            passkeys,
            social,
        });
        let billing = Billing::new(BillingParts {
            auth,
            catalog,
            stripe,
            webhook_queue: Default::default(),
        });
        Ok(AppState::new(Shared {
            billing,
            csrf_key,
            sim,
        }))
    }
}

/// The catalog `TOLLGATE_PLANS` names (or the demo catalog); a bad one is a bad setting.
pub fn load_catalog(config: &Config) -> Result<Catalog, ConfigError> {
    Catalog::load(config.plans_path.as_deref())
        .map_err(|e| ConfigError::new("TOLLGATE_PLANS", e.to_string()))
}

/// A bound, migrated, ready-to-serve tollgate.
pub struct App {
    /// The state the router runs with.
    pub state: AppState,
    listener: TcpListener,
}

impl App {
    /// Opens and migrates the database, binds `config.bind` and builds the state.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let catalog = load_catalog(&config)?;
        Self::build_with(config, catalog).await
    }

    /// [`App::build`] with a catalog already loaded.
    pub async fn build_with(config: Config, catalog: Catalog) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let state = AppState::build_with(config, catalog, port).await?;
        // The endpoint the environment sets exists before the first request: it receives every
        // event from then on.
        crate::outbound::sync_setting(&state.db, &state.config, state.clock.now()).await?;
        Ok(Self { state, listener })
    }

    /// The address actually bound (port 0 becomes a real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cleanup = tokio::spawn(crate::auth::cleanup::run_forever(
            self.state.db.clone(),
            self.state.clock.clone(),
            self.state.signing.retired_window(),
            self.state.config.audit_retention_days,
        ));
        let mailer = tokio::spawn(crate::email::worker(
            self.state.billing.auth.mail.clone(),
            self.state.mail_transport.clone(),
        ));
        let email_sync = tokio::spawn(crate::billing::customers::email_sync_worker(
            self.state.billing.clone(),
        ));
        let state = &self.state;
        let outbound = crate::outbound::deliver::Outbound::new(
            state.db.clone(),
            state.clock.clone(),
            state.config.webhooks.max_attempts,
        )?;
        let webhooks = tokio::spawn(crate::outbound::deliver::worker(outbound));
        let watch = tokio::spawn(crate::gate::watch::run_forever(state.billing.clone()));
        let max_connections = self.state.config.max_connections;
        let header_timeout = Duration::from_secs(self.state.config.header_timeout_secs);
        let router = build_router(self.state);
        let result = crate::server::serve(
            self.listener,
            router,
            max_connections,
            header_timeout,
            shutdown,
        )
        .await
        .context("server failed");
        cleanup.abort();
        mailer.abort();
        email_sync.abort();
        webhooks.abort();
        watch.abort();
        result
    }
}

/// Reads a random key from `app_secrets`, creating it on first start. Every instance on one
/// database gets the same key; the first writer wins a race.
async fn shared_secret(db: &Db, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let value = db.shared_value(name, &hex::encode(fresh)).await?;
    Ok(hex::decode(value)?)
}

/// Request ids: 64 random bits, hex.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = format!("{:016x}", rand::rng().next_u64());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The whole router with its layers.
pub fn build_router(state: AppState) -> Router {
    build_router_with(state, Router::new())
}

/// tollgate's router with an application's own routes merged in, under the same layers
/// (sessions, CSRF, security headers), so the app's handlers can use tollgate's extractors and
/// gate layers. This is how a Rust app embeds tollgate (the README shows this example):
///
/// ```no_run
/// use axum::{Router, response::Html, routing::get};
/// use tollgate::{
///     app::{AppState, build_router_with},
///     config::Config,
///     gate::{PlanName, RequirePlan, require_feature},
///     web::gate_pages::require_plan_page,
/// };
///
/// struct Pro;
/// impl PlanName for Pro {
///     const PLAN: &'static str = "pro";
/// }
///
/// // JSON: 401 without a session, 403 `plan_required` below Pro.
/// async fn reports(RequirePlan(member, _): RequirePlan<Pro>) -> String {
///     member.user.email
/// }
/// async fn audit() -> &'static str {
///     "[]"
/// }
/// async fn dashboard() -> Html<&'static str> {
///     Html("<h1>Team dashboard</h1>")
/// }
///
/// # async fn run() -> anyhow::Result<()> {
/// let config = Config::from_env()?; // TOLLGATE_BIND, DATABASE_URL, STRIPE_SECRET_KEY, …
/// let listener = tokio::net::TcpListener::bind(config.bind).await?;
/// let state = AppState::build(config, listener.local_addr()?.port()).await?;
/// let routes = Router::new()
///     .route("/reports", get(reports))
///     .route("/audit", get(audit).route_layer(require_feature(&state, "audit")))
///     .route("/dashboard", get(dashboard).route_layer(require_plan_page(&state, "team")));
/// let app = build_router_with(state, routes);
/// let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
pub fn build_router_with(state: AppState, app_routes: Router<AppState>) -> Router {
    let session_layer = SessionManagerLayer::new(session_store::DbSessionStore::new(
        state.db.clone(),
        state.cache.clone(),
    ))
    .with_name(state.session_cookie_name())
    .with_secure(state.https())
    .with_http_only(true)
    .with_same_site(SameSite::Lax)
    .with_path("/");
    let session_layer = match &state.config.cookie_domain {
        Some(domain) => session_layer.with_domain(domain.clone()),
        None => session_layer,
    };
    let router = Router::new()
        .merge(crate::account::router())
        .merge(billing::router())
        .merge(crate::gate::router(state.billing.clone()))
        .merge(app_routes)
        .merge(web::router(state.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            web::csrf::check_api,
        ))
        .layer(session_layer)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(middleware::from_fn(edge::request_scope))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // The path only: query strings can carry tokens and never reach the logs.
                tracing::info_span!("request", id, method = %req.method(), path = req.uri().path())
            })
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge));
    // Around the whole router (a layer on it wraps each route, inside the `Allow` axum adds).
    Router::new()
        .fallback_service(router.with_state(state))
        .layer(middleware::from_fn(edge::hide_admin_allow))
}

async fn not_found(State(state): State<AppState>, request: Request) -> Response {
    if request.uri().path().starts_with("/api/") {
        AppError::NotFound.into_response()
    } else {
        web::error_page(
            &state,
            StatusCode::NOT_FOUND,
            "There is nothing at this address.",
        )
    }
}

/// Security headers on every response; `no-store` on everything but static assets, since pages
/// and API answers carry account data.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        // `same-origin`: no Referer (so no token in a link's URL) leaves the site, while browsers
        // keep sending a real Origin on our own form posts (`no-referrer` makes it "null").
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No cross-origin window keeps a handle on ours (tab-nabbing, XS-Leaks).
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if state.https() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    // Unless the handler chose (the published signing keys may be cached a while).
    if !is_static && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
