//! The admin area's outbound webhooks (`/api/admin/webhooks`): the endpoints, their state and
//! latest attempts; adding and removing one, giving one a new secret, starting a stopped one
//! again. Administrators only (404 for anyone else); each change is an audit event.

use axum::{
    Json, Router,
    extract::{FromRef, Path, State},
    http::StatusCode,
    routing::{delete, get, post},
};
use serde::{Deserialize, Serialize};

use crate::{
    audit::{self, Kind},
    auth::Auth,
    billing::Billing,
    clock::rfc3339,
    error::Result,
    extract::ApiJson,
    gate::AdminUser,
    outbound::{self, Attempt, Endpoint},
};

/// The routes.
pub fn router<S>() -> Router<S>
where
    Billing: FromRef<S>,
    Auth: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/api/admin/webhooks", get(list).post(create))
        .route("/api/admin/webhooks/{id}", delete(remove))
        .route("/api/admin/webhooks/{id}/rotate", post(rotate))
        .route("/api/admin/webhooks/{id}/retry", post(retry))
}

/// An endpoint as the admin area shows it (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct EndpointJson {
    /// `whe_…` (`whe_setting` for the one `TOLLGATE_WEBHOOK_URL` sets).
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// The event types it receives: `*`, `family.*` or a type.
    pub events: Vec<String>,
    /// `setting` (changed by the environment) or `admin`.
    pub source: &'static str,
    /// `active`, `retrying` (the next event failed and waits for its next try) or `dead` (it
    /// failed every try: the endpoint stops until it is retried).
    pub state: &'static str,
    /// The last event it has finished with (`seq`).
    pub delivered_through: i64,
    /// Failed tries of the next event.
    pub attempts: i64,
    /// When the next event is tried again (RFC 3339), while retrying.
    pub next_attempt_at: Option<String>,
    /// When it stopped (RFC 3339).
    pub dead_at: Option<String>,
    /// The last failure, in words.
    pub last_error: Option<String>,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// Its latest attempts, newest first (at most 20).
    pub recent_attempts: Vec<Attempt>,
}

async fn json_of(state: &Billing, endpoint: Endpoint) -> Result<EndpointJson> {
    let recent_attempts = outbound::attempts(&state.db, &endpoint.id, 20).await?;
    Ok(EndpointJson {
        state: endpoint.state(),
        source: if endpoint.from_setting {
            "setting"
        } else {
            "admin"
        },
        next_attempt_at: (endpoint.attempts > 0 && endpoint.dead_at.is_none())
            .then(|| rfc3339(endpoint.next_attempt_at)),
        dead_at: endpoint.dead_at.map(rfc3339),
        created_at: rfc3339(endpoint.created_at),
        delivered_through: endpoint.cursor_seq,
        attempts: endpoint.attempts,
        last_error: endpoint.last_error,
        events: endpoint.event_types,
        url: endpoint.url,
        id: endpoint.id,
        recent_attempts,
    })
}

/// The endpoints.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Endpoints {
    /// Oldest first.
    pub endpoints: Vec<EndpointJson>,
}

/// Every endpoint, its state and latest attempts.
#[utoipa::path(get, path = "/api/admin/webhooks", tag = "admin",
    responses((status = 200, description = "The endpoints", body = Endpoints)))]
async fn list(
    State(state): State<Billing>,
    AdminUser(_admin): AdminUser,
) -> Result<Json<Endpoints>> {
    let endpoints = endpoints(&state).await?;
    Ok(Json(Endpoints { endpoints }))
}

/// Every endpoint as the admin area shows it, oldest first.
pub async fn endpoints(state: &Billing) -> Result<Vec<EndpointJson>> {
    let mut endpoints = vec![];
    for endpoint in outbound::list(&state.db).await? {
        endpoints.push(json_of(state, endpoint).await?);
    }
    Ok(endpoints)
}
/// A new endpoint.
#[derive(Deserialize, utoipa::ToSchema)]
struct NewEndpoint {
    /// An absolute http(s) URL (https in production), without a user name or password.
    url: String,
    /// The event types it receives: `*`, `family.*` or a type; all when left out or empty.
    #[serde(default)]
    events: Vec<String>,
}

/// An endpoint just added, with its secret (shown this once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    /// The endpoint.
    pub endpoint: EndpointJson,
    /// Its signing secret, `whsec_…`: give it to the receiver's Standard Webhooks library.
    pub secret: String,
}

/// Adds an endpoint: it receives the events from now on.
#[utoipa::path(post, path = "/api/admin/webhooks", tag = "admin", request_body = NewEndpoint,
    responses((status = 201, description = "Added; the secret is shown this once", body = Created)))]
async fn create(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<Created>)> {
    let created = add(&state, &admin.user.id, &body.url, &body.events).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Adds an endpoint for `admin`: it and its secret (to show once).
pub async fn add(state: &Billing, admin: &str, url: &str, events: &[String]) -> Result<Created> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    let (endpoint, secret) = outbound::create(&mut tx, &state.config, url, events, now).await?;
    let payload = serde_json::json!({
        "endpoint": endpoint.id, "url": outbound::shown_url(&endpoint.url),
        "events": endpoint.event_types,
    });
    record(state, &mut tx, admin, Kind::AdminWebhookCreated, payload).await?;
    tx.commit().await?;
    let endpoint = json_of(state, endpoint).await?;
    Ok(Created { endpoint, secret })
}

/// Removes an endpoint added here (the one the environment sets goes with its setting).
#[utoipa::path(delete, path = "/api/admin/webhooks/{id}", tag = "admin",
    params(("id" = String, Path, description = "The endpoint (`whe_…`)")),
    responses((status = 204, description = "Removed")))]
async fn remove(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    delete_endpoint(&state, &admin.user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes an endpoint added in the admin area, for `admin`.
pub async fn delete_endpoint(state: &Billing, admin: &str, id: &str) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let endpoint = outbound::delete(&mut tx, id).await?;
    let payload =
        serde_json::json!({"endpoint": endpoint.id, "url": outbound::shown_url(&endpoint.url)});
    record(state, &mut tx, admin, Kind::AdminWebhookDeleted, payload).await?;
    tx.commit().await?;
    Ok(())
}

/// A new secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Rotated {
    /// The new signing secret, `whsec_…` (shown this once).
    pub secret: String,
    /// Until when the old one signs too (RFC 3339): every delivery carries both signatures.
    pub previous_valid_until: String,
}

/// Gives an endpoint a new signing secret; the old one signs too for 24 hours.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/rotate", tag = "admin",
    params(("id" = String, Path, description = "The endpoint (`whe_…`)")),
    responses((status = 200, description = "The new secret", body = Rotated)))]
async fn rotate(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<Json<Rotated>> {
    Ok(Json(new_secret(&state, &admin.user.id, &id).await?))
}

/// Gives an endpoint a new secret, for `admin`.
pub async fn new_secret(state: &Billing, admin: &str, id: &str) -> Result<Rotated> {
    let mut tx = state.db.begin().await?;
    let (secret, until) = outbound::rotate(&mut tx, id, state.clock.now()).await?;
    let payload = serde_json::json!({"endpoint": id});
    record(state, &mut tx, admin, Kind::AdminWebhookRotated, payload).await?;
    tx.commit().await?;
    Ok(Rotated {
        secret,
        previous_valid_until: rfc3339(until),
    })
}

/// Starts a stopped endpoint again: its dead delivery is tried at once, then the rest in order.
#[utoipa::path(post, path = "/api/admin/webhooks/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "The endpoint (`whe_…`)")),
    responses((status = 204, description = "Started again (or it was not stopped)")))]
async fn retry(
    State(state): State<Billing>,
    AdminUser(admin): AdminUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    start_again(&state, &admin.user.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts a stopped endpoint again, for `admin`; false when it was not stopped.
pub async fn start_again(state: &Billing, admin: &str, id: &str) -> Result<bool> {
    let mut tx = state.db.begin().await?;
    let started = outbound::retry(&mut tx, id).await?;
    if started {
        let payload = serde_json::json!({"endpoint": id});
        record(state, &mut tx, admin, Kind::AdminWebhookRetried, payload).await?;
    }
    tx.commit().await?;
    Ok(started)
}

/// Records the administrator's change in its transaction.
async fn record(
    state: &Billing,
    conn: &mut sqlx::AnyConnection,
    admin: &str,
    kind: Kind,
    payload: serde_json::Value,
) -> Result<()> {
    let entry = audit::Entry {
        kind,
        actor: admin,
        subject: None,
        payload,
    };
    audit::record(conn, state.clock.now(), entry).await?;
    Ok(())
}
