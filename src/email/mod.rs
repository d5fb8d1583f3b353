//! Email: a durable outbox, a sending worker, lettre over SMTP, and the development mailbox.
//!
//! A message is rendered from `templates/email/<kind>.{txt,html}` and written to `outbox` in the
//! same transaction as the change that causes it, so it is never lost because a process died. A
//! worker on every instance claims due messages with a lease (`locked_until`; `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), sends them, and marks them sent — or schedules a retry with exponential
//! backoff (2^attempts seconds, at most an hour; given up after 12 attempts). A message whose
//! sender died mid-way is sent again when its lease expires: delivery is at least once, and once in
//! every case but a crash between the relay accepting it and the row being marked.
//!
//! Transports: SMTP (`SMTP_URL`: `smtps://` for TLS, `smtp://…?tls=required` for STARTTLS) or, in
//! development without `SMTP_URL`, the mailbox: messages are marked sent and listed at
//! `/dev/mailbox`. Addresses are parsed by lettre, which refuses header injection; user-provided
//! text is escaped by the HTML templates.

pub mod tokens;

use std::time::Duration;

use anyhow::Context as _;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use minijinja::Value;
use sqlx::{Any, AnyConnection};

use std::sync::Arc;

use crate::{base::Base, db, ids::new_id};

/// What the email capability shares: the base, how mail leaves, and the worker's wake-up.
///
/// One pointer: clones (every extractor and spawned task takes one) cost a reference count. It
/// dereferences to its parts, and they to the layer below ([`Base`]), so `mail.db` and
/// `mail.config` read through.
#[derive(Clone)]
pub struct Mail(Arc<MailParts>);

/// What a [`Mail`] holds.
pub struct MailParts {
    /// Settings, database, cache, clock, public URL, templates.
    pub base: Base,
    /// How email leaves (SMTP, or the development mailbox).
    pub mail_transport: Transport,
    /// Wakes the outbox worker when a message is queued.
    pub mail_wakeup: tokio::sync::Notify,
}

impl Mail {
    /// Wraps the parts.
    pub fn new(parts: MailParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for Mail {
    type Target = MailParts;

    fn deref(&self) -> &MailParts {
        &self.0
    }
}

impl std::ops::Deref for MailParts {
    type Target = Base;

    fn deref(&self) -> &Base {
        &self.base
    }
}

/// Every email template, compiled into the binary.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "email/verify.txt",
        include_str!("../../templates/email/verify.txt"),
    ),
    (
        "email/verify.html",
        include_str!("../../templates/email/verify.html"),
    ),
    (
        "email/reset.txt",
        include_str!("../../templates/email/reset.txt"),
    ),
    (
        "email/reset.html",
        include_str!("../../templates/email/reset.html"),
    ),
    (
        "email/magic.txt",
        include_str!("../../templates/email/magic.txt"),
    ),
    (
        "email/magic.html",
        include_str!("../../templates/email/magic.html"),
    ),
    (
        "email/signup_attempt.txt",
        include_str!("../../templates/email/signup_attempt.txt"),
    ),
    (
        "email/signup_attempt.html",
        include_str!("../../templates/email/signup_attempt.html"),
    ),
    (
        "email/password_changed.txt",
        include_str!("../../templates/email/password_changed.txt"),
    ),
    (
        "email/password_changed.html",
        include_str!("../../templates/email/password_changed.html"),
    ),
    (
        "email/email_change.txt",
        include_str!("../../templates/email/email_change.txt"),
    ),
    (
        "email/email_change.html",
        include_str!("../../templates/email/email_change.html"),
    ),
    (
        "email/email_change_notice.txt",
        include_str!("../../templates/email/email_change_notice.txt"),
    ),
    (
        "email/email_change_notice.html",
        include_str!("../../templates/email/email_change_notice.html"),
    ),
    (
        "email/trial_will_end.txt",
        include_str!("../../templates/email/trial_will_end.txt"),
    ),
    (
        "email/trial_will_end.html",
        include_str!("../../templates/email/trial_will_end.html"),
    ),
    (
        "email/payment_failed.txt",
        include_str!("../../templates/email/payment_failed.txt"),
    ),
    (
        "email/payment_failed.html",
        include_str!("../../templates/email/payment_failed.html"),
    ),
];

/// Longest lease a sender holds on a claimed batch: longer than the batch can take to send
/// (`CLAIM_BATCH` × the SMTP timeout), so no other instance takes a message still being sent.
const LEASE_SECS: i64 = 60;
/// Messages claimed at once.
const CLAIM_BATCH: i64 = 5;
/// SMTP timeout per message.
const SMTP_TIMEOUT_SECS: u64 = 10;
/// Attempts before a message is given up.
const MAX_ATTEMPTS: i64 = 12;

/// How messages leave.
#[derive(Clone)]
pub enum Transport {
    /// lettre over SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Development: kept in the outbox and shown at `/dev/mailbox`.
    Mailbox,
}

impl Transport {
    /// From `SMTP_URL`, or the mailbox when it is unset (development only; production refuses to
    /// start without SMTP).
    pub fn from_config(smtp_url: Option<&str>) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => Ok(Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .context("SMTP_URL is not a valid smtp:// or smtps:// URL")?
                    .timeout(Some(Duration::from_secs(SMTP_TIMEOUT_SECS)))
                    .build(),
            )),
            None => Ok(Transport::Mailbox),
        }
    }
}

/// A message to queue.
pub struct Outgoing<'a> {
    /// Template name under `templates/email/` and the outbox `kind`.
    pub kind: &'a str,
    /// Recipient address.
    pub to: &'a str,
    /// Template context (product name and base URL are added).
    pub context: Value,
    /// When set, a second message with the same key is not queued (once per Stripe event).
    pub dedupe_key: Option<String>,
}

/// Renders and queues a message on `conn` (inside the caller's transaction).
pub async fn enqueue(
    state: &Mail,
    conn: &mut AnyConnection,
    msg: Outgoing<'_>,
) -> crate::Result<()> {
    let ctx = minijinja::context! {
        product_name => &state.config.product_name,
        base_url => state.base_url.as_str().trim_end_matches('/'),
        ..msg.context
    };
    let render = |ext: &str| {
        state
            .templates
            .get_template(&format!("email/{}.{ext}", msg.kind))
            .and_then(|t| t.render(&ctx))
            .map_err(|e| anyhow::anyhow!("email template {}: {e}", msg.kind))
    };
    let (text, html) = (render("txt")?, render("html")?);
    // The first line of the text template is the subject.
    let (subject, text) = text.split_once('\n').unwrap_or((&text, ""));
    let now = db::now();
    sqlx::query(
        "INSERT INTO outbox (id, kind, recipient, subject, text_body, html_body, dedupe_key, status, \
         attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(new_id("msg"))
    .bind(msg.kind)
    .bind(msg.to)
    .bind(subject.trim().trim_start_matches("Subject:").trim())
    .bind(text.trim_start())
    .bind(html)
    .bind(msg.dedupe_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Commits a transaction that queued messages, then wakes the worker (it only sees committed
/// rows; without the wake-up it would find them within a second anyway).
pub async fn commit_and_wake(
    state: &Mail,
    tx: sqlx::Transaction<'static, Any>,
) -> crate::Result<()> {
    tx.commit().await?;
    state.mail_wakeup.notify_one();
    Ok(())
}

type Claimed = (String, String, String, String, String, i64);

/// Claims due messages under a lease.
async fn claim(state: &Mail, limit: i64) -> sqlx::Result<Vec<Claimed>> {
    let now = db::now();
    let skip_locked = match state.db.engine {
        db::Engine::Postgres => "FOR UPDATE SKIP LOCKED",
        db::Engine::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET locked_until = $1, attempts = attempts + 1 WHERE id IN ( \
           SELECT id FROM outbox WHERE status = 'pending' AND next_attempt_at <= $2 \
           AND (locked_until IS NULL OR locked_until < $2) ORDER BY created_at LIMIT $3 {skip_locked}) \
         RETURNING id, recipient, subject, text_body, html_body, attempts"
    );
    sqlx::query_as::<Any, Claimed>(sqlx::AssertSqlSafe(sql))
        .bind(now + LEASE_SECS)
        .bind(now)
        .bind(limit)
        .fetch_all(&state.db.pool)
        .await
}

async fn deliver(state: &Mail, transport: &Transport, m: &Claimed) -> anyhow::Result<()> {
    let Transport::Smtp(smtp) = transport else {
        return Ok(());
    };
    let from: Mailbox = state
        .config
        .mail_from
        .parse()
        .context("TOLLGATE_MAIL_FROM is not an address")?;
    let to: Mailbox = m.1.parse().context("recipient is not an address")?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(m.2.clone())
        .multipart(MultiPart::alternative_plain_html(m.3.clone(), m.4.clone()))?;
    smtp.send(message).await?;
    Ok(())
}

/// Sends what is due once; returns how many messages were handled.
pub async fn send_due(state: &Mail, transport: &Transport) -> sqlx::Result<usize> {
    let batch = claim(state, CLAIM_BATCH).await?;
    for m in &batch {
        match deliver(state, transport, m).await {
            Ok(()) => {
                sqlx::query("UPDATE outbox SET status = 'sent', sent_at = $1, locked_until = NULL WHERE id = $2")
                    .bind(db::now())
                    .bind(&m.0)
                    .execute(&state.db.pool)
                    .await?;
                tracing::info!(message = %m.0, to = %crate::telemetry::mask_address(&m.1), "email sent");
            }
            Err(e) => {
                let attempts = m.5;
                let status = if attempts >= MAX_ATTEMPTS {
                    "failed"
                } else {
                    "pending"
                };
                let wait = 2i64.saturating_pow(attempts.min(12) as u32).min(3_600);
                tracing::warn!(message = %m.0, attempts, error = %e, "email not sent; will retry");
                sqlx::query(
                    "UPDATE outbox SET status = $1, next_attempt_at = $2, locked_until = NULL, last_error = $3 \
                     WHERE id = $4",
                )
                .bind(status)
                .bind(db::now() + wait)
                .bind(e.to_string().chars().take(500).collect::<String>())
                .bind(&m.0)
                .execute(&state.db.pool)
                .await?;
            }
        }
    }
    Ok(batch.len())
}

/// The worker: sends due messages whenever woken, and at least every second.
pub async fn worker(state: Mail, transport: Transport) {
    loop {
        match send_due(&state, &transport).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "outbox worker cannot reach the database"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), state.mail_wakeup.notified()).await;
    }
}

// A claimed batch must be sent (or given up) before its lease ends.
const _: () = assert!(CLAIM_BATCH * (SMTP_TIMEOUT_SECS as i64) < LEASE_SECS);
