//! The delivery loop every instance runs: it takes the lease of each endpoint that is due,
//! delivers its next events in order, and gives the lease back (see the module above).

use std::time::Duration;

use crate::{
    audit::{self, Published},
    clock::Clock,
    db::Db,
    ids::new_id,
};

use super::{Endpoint, signature};

/// How long a lease lasts: far more than one delivery may take, renewed by each one.
const LEASE_SECS: i64 = 60;
/// How long a backend has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How many events one turn reads.
const BATCH: i64 = 50;
/// The longest wait between tries.
const MAX_WAIT_SECS: i64 = 6 * 3600;
// A delivery ends well before its lease does.
const _: () = assert!((TIMEOUT.as_secs() as i64) * 3 < LEASE_SECS);

/// What the loop needs.
#[derive(Clone)]
pub struct Outbound {
    db: Db,
    clock: Clock,
    max_attempts: i64,
    http: reqwest::Client,
    /// This instance, as lease holder.
    owner: String,
}

impl Outbound {
    /// The loop's state on `db`, with `clock` for its waits.
    pub fn new(db: Db, clock: Clock, max_attempts: u32) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("tollgate-webhooks")
            .build()?;
        Ok(Self {
            db,
            clock,
            max_attempts: i64::from(max_attempts),
            http,
            owner: new_id("ins"),
        })
    }
}

/// The wait after the `attempts`-th failure: 5 s, then four times longer each time, at most 6 h.
pub fn backoff(attempts: i64) -> i64 {
    let exponent = u32::try_from((attempts - 1).clamp(0, 12)).unwrap_or(0);
    (5 * 4i64.pow(exponent)).min(MAX_WAIT_SECS)
}

/// Delivers forever: every half second, each endpoint that is due and not leased gets a task of
/// its own, so a slow or unreachable backend delays only its own endpoint.
pub async fn worker(outbound: Outbound) {
    loop {
        if let Err(e) = turn(&outbound).await {
            tracing::warn!(error = %e, "outbound webhooks cannot reach the database");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Claims each endpoint that is due and starts its deliveries; how many it started.
pub async fn turn(o: &Outbound) -> sqlx::Result<usize> {
    let now = o.clock.now();
    let due: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM webhook_endpoints \
         WHERE dead_at IS NULL AND next_attempt_at <= $1 AND lease_until <= $1",
    )
    .bind(now)
    .fetch_all(&o.db.pool)
    .await?;
    let mut started = 0;
    for (id,) in due {
        let claimed = sqlx::query(
            "UPDATE webhook_endpoints SET lease_owner = $1, lease_until = $2 \
             WHERE id = $3 AND dead_at IS NULL AND next_attempt_at <= $4 AND lease_until <= $4",
        )
        .bind(&o.owner)
        .bind(now + LEASE_SECS)
        .bind(&id)
        .bind(now)
        .execute(&o.db.pool)
        .await?
        .rows_affected()
            == 1;
        if claimed {
            started += 1;
            let o = o.clone();
            tokio::spawn(async move {
                if let Err(e) = run_leased(&o, &id).await {
                    tracing::warn!(error = %e, endpoint = %id, "an outbound delivery failed to record");
                }
            });
        }
    }
    Ok(started)
}

/// Delivers a leased endpoint's events, then gives the lease back.
async fn run_leased(o: &Outbound, id: &str) -> sqlx::Result<()> {
    let result = deliver_endpoint(o, id).await;
    sqlx::query(
        "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = 0 \
         WHERE id = $1 AND lease_owner = $2",
    )
    .bind(id)
    .bind(&o.owner)
    .execute(&o.db.pool)
    .await?;
    result.map(|_| ())
}

/// Delivers the endpoint's next events in order, while the backend answers 2xx and this
/// instance holds the lease; whether there was anything to do.
async fn deliver_endpoint(o: &Outbound, id: &str) -> sqlx::Result<bool> {
    let Some(endpoint) = super::find(&o.db, id).await? else {
        return Ok(false);
    };
    let events = audit::after(&o.db, endpoint.cursor_seq, BATCH).await?;
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(false);
    };
    // Events it does not receive are passed over; the cursor moves past them with the next write.
    let mut done = endpoint.cursor_seq;
    for event in events.iter().filter(|e| endpoint.wants(&e.kind)) {
        let outcome = post(o, &endpoint, event).await;
        record_attempt(o, &endpoint, event, &outcome).await?;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                done = event.seq;
                if !advance(o, id, done).await? {
                    // The lease was lost (this turn took too long): another instance goes on.
                    return Ok(true);
                }
            }
            outcome => {
                let error = match outcome {
                    Ok(status) => format!("answered {status}"),
                    Err(e) => e,
                };
                fail(o, &endpoint, done, &error).await?;
                return Ok(true);
            }
        }
    }
    advance(o, id, last).await?;
    Ok(true)
}

/// POSTs `event` to the endpoint, signed: the backend's status, or why none came.
async fn post(o: &Outbound, endpoint: &Endpoint, event: &Published) -> Result<i64, String> {
    let body = serde_json::json!({
        "type": event.kind,
        "timestamp": event.at,
        "data": event,
    })
    .to_string();
    // The signature's time is the sending time (receivers refuse old ones), not the event's.
    let timestamp = crate::db::now();
    let keys = endpoint.keys(o.clock.now());
    let response = o
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signature(&keys, &event.id, timestamp, &body),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                "the request failed".to_owned()
            }
        })?;
    Ok(i64::from(response.status().as_u16()))
}

/// Moves the endpoint's cursor to `seq` and renews the lease, if this instance still holds it.
async fn advance(o: &Outbound, id: &str, seq: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_endpoints SET cursor_seq = $1, attempts = 0, next_attempt_at = 0, \
         last_error = NULL, lease_until = $2 \
         WHERE id = $3 AND lease_owner = $4 AND cursor_seq <= $1",
    )
    .bind(seq)
    .bind(o.clock.now() + LEASE_SECS)
    .bind(id)
    .bind(&o.owner)
    .execute(&o.db.pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed try of the next event: waits, or stops the endpoint after the last try. The
/// cursor keeps what this turn delivered before it (`done`).
async fn fail(o: &Outbound, endpoint: &Endpoint, done: i64, error: &str) -> sqlx::Result<()> {
    let now = o.clock.now();
    // The tries of this event: counted on from the stored ones only if the cursor stood still.
    let attempts = if done == endpoint.cursor_seq {
        endpoint.attempts + 1
    } else {
        1
    };
    let dead = attempts >= o.max_attempts;
    sqlx::query(
        "UPDATE webhook_endpoints SET cursor_seq = $1, attempts = $2, next_attempt_at = $3, \
         dead_at = $4, last_error = $5 WHERE id = $6 AND lease_owner = $7",
    )
    .bind(done)
    .bind(attempts)
    .bind(now + backoff(attempts))
    .bind(dead.then_some(now))
    .bind(error)
    .bind(&endpoint.id)
    .bind(&o.owner)
    .execute(&o.db.pool)
    .await?;
    if dead {
        tracing::warn!(endpoint = %endpoint.id, attempts, "an outbound webhook is dead: its endpoint stops until it is retried");
    }
    Ok(())
}

async fn record_attempt(
    o: &Outbound,
    endpoint: &Endpoint,
    event: &Published,
    outcome: &Result<i64, String>,
) -> sqlx::Result<()> {
    let (status, error) = match outcome {
        Ok(status) if (200..300).contains(status) => (Some(*status), None),
        Ok(status) => (Some(*status), Some(format!("answered {status}"))),
        Err(e) => (None, Some(e.clone())),
    };
    sqlx::query(
        "INSERT INTO webhook_attempts (id, endpoint_id, event_id, seq, at, status, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id("wha"))
    .bind(&endpoint.id)
    .bind(&event.id)
    .bind(event.seq)
    .bind(o.clock.now())
    .bind(status)
    .bind(error)
    .execute(&o.db.pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn waits_grow_four_times_from_5_seconds_to_6_hours() {
        let waits: Vec<i64> = (1..=9).map(backoff).collect();
        assert_eq!(waits, [5, 20, 80, 320, 1280, 5120, 20480, 21600, 21600]);
        assert_eq!(backoff(30), 21600);
    }
}
