//! The in-process cache of sessions, members (what the access decision needs about a user: the
//! gate's `Member`, a user with their subscription rows) and credentials (API keys, verified
//! access tokens), so that the session or key check and the access decision on a hot path cost
//! no database round trip. It knows users only by id: what a member entry holds is the caller's
//! type.
//!
//! Three bounded [`quick_cache`] shelves hold the entries, each at most
//! `TOLLGATE_CACHE_ENTRIES` of them (the least useful are evicted first).
//!
//! Freshness (docs/api.md):
//! - **This instance**: every write forgets what it changed *after its commit*. Forgetting is
//!   O(1): it removes the one entry it names and records a *forget stamp* (the generation it
//!   happened at) for the user or session. An entry loaded before a stamp of its own key or of its
//!   user is stale and never served, so a user's sessions and credentials are forgotten without
//!   looking for them. A load that began before a forget is not stored either.
//! - **Other instances and processes**: the database publishes every change to something cached
//!   in the transaction that makes it (triggers, migration 0027): on PostgreSQL a `NOTIFY`, on
//!   SQLite a row of `cache_forgets` that every process on the file reads every 100 ms ([`poll`]).
//!   Every instance applies them ([`push`]). So a forget exists exactly when its change committed,
//!   whoever made it (an instance, a command, an operator's `UPDATE`), and cannot be lost between
//!   a commit and its publishing. While that channel has proved itself within [`SILENCE`] (on
//!   PostgreSQL a ping every 200 ms; on SQLite each read), entries live up to [`PUSHED_TTL`].
//!   When it has not, an entry lives at most [`TTL`] after its load began, so a change committed
//!   anywhere is seen everywhere within a second even when the channel stops silently. When the
//!   channel may have lost forgets (a dropped connection, a long pause), everything loaded before
//!   is dropped ([`Cache::forget_everything`]).
//!
//! Access itself is not cached: it depends on the clock (cancel-at and grace ends), so it is
//! computed from the cached rows on every request.

pub mod poll;
pub mod push;
pub mod wire;

use std::{
    any::Any,
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};

/// How long an entry may be served after its load began, when forgets are not pushed.
pub const TTL: Duration = Duration::from_millis(500);

/// How long an entry may be served while forgets arrive pushed. The database publishes every
/// change in its own transaction, so a change is seen in milliseconds and this lifetime is only a
/// backstop; a channel that stops is noticed within [`SILENCE`], and entries then fall back to
/// [`TTL`].
pub const PUSHED_TTL: Duration = Duration::from_secs(30);

/// How long forgets count as pushed after the channel last proved that every forget committed
/// until then was applied (a ping sent then came back; a read that began then succeeded). With
/// [`TTL`], the longest a change can go unseen when the channel stops silently: under a second.
pub const SILENCE: Duration = Duration::from_millis(600);

/// Entries per shelf (sessions, members, credentials) when no size is given (the default of
/// `TOLLGATE_CACHE_ENTRIES`).
pub const DEFAULT_ENTRIES: usize = 10_000;

/// Forget stamps kept at most; past this, everything is forgotten at once instead.
const MAX_STAMPS: usize = 200_000;

/// A member or credential entry: the caller's type, behind one pointer.
type Entry = Arc<dyn Any + Send + Sync>;

/// The digest a session is known by (its stored id is the hex of it).
pub type SessionKey = [u8; 32];

/// The SHA-256 of a session id's text: the key of its entry and of its forget stamps.
pub fn session_key(id: &Id) -> SessionKey {
    Sha256::digest(id.to_string().as_bytes()).into()
}

/// Taken before a load; the load is stored only if nothing it covers was forgotten since.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    generation: u64,
    at: Instant,
}

/// One stored load: when it began, the generation then, and whose it is.
struct Slot<V> {
    at: Instant,
    generation: u64,
    user: Option<Box<str>>,
    value: V,
}

type Shelf<K, V> = quick_cache::sync::Cache<K, Arc<Slot<V>>>;

/// A session as the cache keeps it: its data as the JSON text it is stored as (a few hundred
/// bytes, where the parsed map takes several times that), read back on each use.
struct StoredSession {
    data: Box<str>,
    expires_at: i64,
}

/// The generation at which each user and session was last forgotten (recent ones only: a stamp
/// older than [`PUSHED_TTL`] can only concern entries that expired anyway).
#[derive(Default)]
struct Stamps {
    users: HashMap<Box<str>, (u64, Instant)>,
    sessions: HashMap<SessionKey, (u64, Instant)>,
    /// Prune when there are this many.
    prune_at: usize,
}

impl Stamps {
    fn len(&self) -> usize {
        self.users.len() + self.sessions.len()
    }

    /// Drops stamps older than [`PUSHED_TTL`]; at most once per doubling, so O(1) per forget.
    fn prune(&mut self) {
        if self.len() < self.prune_at.max(1024) {
            return;
        }
        self.users.retain(|_, (_, at)| at.elapsed() < PUSHED_TTL);
        self.sessions.retain(|_, (_, at)| at.elapsed() < PUSHED_TTL);
        self.prune_at = self.len() * 2;
    }

    /// True when `user` or `session` was forgotten after `generation`.
    fn newer(&self, generation: u64, user: Option<&str>, session: Option<&SessionKey>) -> bool {
        let user = user.and_then(|u| self.users.get(u));
        let session = session.and_then(|s| self.sessions.get(s));
        [user, session]
            .into_iter()
            .flatten()
            .any(|(g, _)| *g > generation)
    }
}

/// What a forget names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forget {
    /// A user, with their member entry, sessions and credentials.
    User(String),
    /// One session.
    Session(SessionKey),
    /// Everything (a notification channel that was down, or an operator's `NOTIFY … '*'`).
    Everything,
}

/// Sessions by the digest of their id, members by user id, and credentials by the hash of their
/// secret, each entry with its user.
pub struct Cache {
    generation: AtomicU64,
    stamps: RwLock<Stamps>,
    /// Entries loaded before this (nanoseconds after `origin`) are stale.
    valid_from: AtomicU64,
    origin: Instant,
    /// Forgets count as pushed until this (nanoseconds after `origin`; see [`SILENCE`]).
    pushed_until: AtomicU64,
    sessions: Shelf<SessionKey, StoredSession>,
    members: Shelf<Box<str>, Entry>,
    keys: Shelf<Box<str>, Entry>,
    /// True once [`push::start`] ran for this cache.
    started: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("pushed", &self.pushed())
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(DEFAULT_ENTRIES)
    }
}

impl Cache {
    /// A cache holding at most `entries` sessions, as many members and as many credentials.
    pub fn new(entries: usize) -> Self {
        let entries = entries.max(1);
        Self {
            generation: AtomicU64::new(0),
            stamps: RwLock::new(Stamps::default()),
            valid_from: AtomicU64::new(0),
            origin: Instant::now(),
            pushed_until: AtomicU64::new(0),
            sessions: Shelf::new(entries),
            members: Shelf::new(entries),
            keys: Shelf::new(entries),
            started: AtomicBool::new(false),
        }
    }

    /// Take before reading the database for a later `put_*`.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long entries live now.
    fn ttl(&self) -> Duration {
        if self.pushed() { PUSHED_TTL } else { TTL }
    }

    fn stamps(&self) -> std::sync::RwLockReadGuard<'_, Stamps> {
        // A panic while holding the lock leaves stamps that are still valid.
        self.stamps.read().unwrap_or_else(|e| e.into_inner())
    }

    /// True when a load taken at `at` under `generation`, of `user` or `session`, may be served.
    fn current(
        &self,
        at: Instant,
        generation: u64,
        user: Option<&str>,
        session: Option<&SessionKey>,
    ) -> bool {
        if at.elapsed() >= self.ttl() || self.nanos(at) < self.valid_from.load(Ordering::Acquire) {
            return false;
        }
        generation == self.generation.load(Ordering::Acquire)
            || !self.stamps().newer(generation, user, session)
    }

    fn fresh<V>(&self, slot: &Slot<V>, session: Option<&SessionKey>) -> bool {
        self.current(slot.at, slot.generation, slot.user.as_deref(), session)
    }

    fn slot<V>(ticket: Ticket, user: Option<&str>, value: V) -> Arc<Slot<V>> {
        Arc::new(Slot {
            at: ticket.at,
            generation: ticket.generation,
            user: user.map(Into::into),
            value,
        })
    }

    /// The cached record of session `id`, known by `key` (its [`session_key`]); it may have
    /// expired by its own date: the caller checks.
    pub fn session(&self, id: &Id, key: &SessionKey) -> Option<Record> {
        let slot = self.sessions.get(key)?;
        if !self.fresh(&slot, Some(key)) {
            return None;
        }
        Some(Record {
            id: *id,
            data: serde_json::from_str(&slot.value.data).ok()?,
            expiry_date: time::OffsetDateTime::from_unix_timestamp(slot.value.expires_at).ok()?,
        })
    }

    /// Stores a session loaded under `ticket`: its [`session_key`], its data as the JSON text
    /// it was read as, its expiry (Unix seconds) and the user it signs in.
    pub fn put_session(
        &self,
        ticket: Ticket,
        key: SessionKey,
        data: String,
        expires_at: i64,
        user: Option<&str>,
    ) {
        if !self.current(ticket.at, ticket.generation, user, Some(&key)) {
            return;
        }
        let stored = StoredSession {
            data: data.into_boxed_str(),
            expires_at,
        };
        self.sessions.insert(key, Self::slot(ticket, user, stored));
    }

    /// The member cached for `user_id`, if there is one of type `M`.
    pub fn member<M: Any + Send + Sync>(&self, user_id: &str) -> Option<Arc<M>> {
        let slot = self.members.get(user_id)?;
        if !self.fresh(&slot, None) {
            return None;
        }
        slot.value.clone().downcast().ok()
    }

    /// Stores `member` for `user_id`, unless something was forgotten since `ticket` was taken.
    pub fn put_member<M: Any + Send + Sync>(&self, ticket: Ticket, user_id: &str, member: Arc<M>) {
        if self.current(ticket.at, ticket.generation, Some(user_id), None) {
            let slot = Self::slot::<Entry>(ticket, Some(user_id), member);
            self.members.insert(user_id.into(), slot);
        }
    }

    /// The credential (an API key, a verified access token) cached under `hash`, if there is
    /// one of type `K`.
    pub fn credential<K: Any + Send + Sync>(&self, hash: &str) -> Option<Arc<K>> {
        let slot = self.keys.get(hash)?;
        if !self.fresh(&slot, None) {
            return None;
        }
        slot.value.clone().downcast().ok()
    }

    /// Stores credential `key` of `user_id` under `hash`, unless something was forgotten since
    /// `ticket`.
    pub fn put_credential<K: Any + Send + Sync>(
        &self,
        ticket: Ticket,
        hash: &str,
        user_id: &str,
        key: Arc<K>,
    ) {
        if self.current(ticket.at, ticket.generation, Some(user_id), None) {
            let slot = Self::slot::<Entry>(ticket, Some(user_id), key);
            self.keys.insert(hash.into(), slot);
        }
    }

    /// Forgets one session here at once (after it was saved or deleted); the other instances hear
    /// of it from the database.
    pub fn forget_session(&self, id: &Id) {
        self.forget_here(&Forget::Session(session_key(id)));
    }

    /// Forgets a user, their subscriptions, their credentials and every session of theirs here at
    /// once (after a commit that changed any of them); the other instances hear of it from the
    /// database.
    pub fn forget_user(&self, user_id: &str) {
        self.forget_here(&Forget::User(user_id.to_owned()));
    }

    /// Applies `forget` to this process only (what another instance published, or a local write).
    pub fn forget_here(&self, forget: &Forget) {
        if *forget == Forget::Everything {
            return self.forget_everything();
        }
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let stamp = (generation, Instant::now());
        // The stamp first (one lock, which also tells whether there are too many): a store
        // racing with this forget then sees it.
        let full = {
            let mut stamps = self.stamps.write().unwrap_or_else(|e| e.into_inner());
            match forget {
                Forget::User(user) => stamps.users.insert(user.as_str().into(), stamp),
                Forget::Session(key) => stamps.sessions.insert(*key, stamp),
                Forget::Everything => None,
            };
            stamps.prune();
            stamps.len() > MAX_STAMPS
        };
        match forget {
            Forget::User(user) => drop(self.members.remove(user.as_str())),
            Forget::Session(key) => drop(self.sessions.remove(key)),
            Forget::Everything => {}
        }
        if full {
            self.forget_everything();
        }
    }

    /// Makes every entry loaded until now stale (and every load that began before now unstored).
    pub fn forget_everything(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let now = self.nanos(Instant::now()).saturating_add(1);
        self.valid_from.fetch_max(now, Ordering::AcqRel);
        self.sessions.clear();
        self.members.clear();
        self.keys.clear();
        let mut stamps = self.stamps.write().unwrap_or_else(|e| e.into_inner());
        *stamps = Stamps::default();
    }

    /// Now, on the cache's own clock (what [`Cache::confirmed`] takes).
    pub fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    /// Records that every forget committed before `at` (a time from [`Cache::now`]; a later
    /// one counts as now) has been applied: entries may live up to [`PUSHED_TTL`] until
    /// [`SILENCE`] after it. Called by the channel ([`push`], [`poll`]).
    pub fn confirmed(&self, at: u64) {
        let at = at.min(self.now());
        let until = at.saturating_add(u64::try_from(SILENCE.as_nanos()).unwrap_or(u64::MAX));
        self.pushed_until.fetch_max(until, Ordering::AcqRel);
    }

    /// The channel is down: entries live [`TTL`] until it confirms again.
    pub fn unconfirmed(&self) {
        self.pushed_until.store(0, Ordering::Release);
    }

    /// The latest time (on the cache's clock, [`Cache::now`]) before which every committed forget
    /// is known to have been applied; 0 before the first confirmation or after the channel went
    /// down.
    pub fn confirmed_through(&self) -> u64 {
        let until = self.pushed_until.load(Ordering::Acquire);
        until.saturating_sub(u64::try_from(SILENCE.as_nanos()).unwrap_or(u64::MAX))
    }

    /// True while forgets arrive pushed (confirmed within [`SILENCE`]).
    pub fn pushed(&self) -> bool {
        self.now() < self.pushed_until.load(Ordering::Acquire)
    }

    /// Entries held now: sessions, members, credentials.
    pub fn len(&self) -> (usize, usize, usize) {
        (self.sessions.len(), self.members.len(), self.keys.len())
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0, 0)
    }
}

#[cfg(test)]
mod tests;
