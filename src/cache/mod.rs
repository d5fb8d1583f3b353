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
//! - **Other instances and processes**: every forget is also published ([`push`]): on
//!   PostgreSQL with `NOTIFY`, on SQLite as a row of `cache_forgets` that the other processes on
//!   the file read every 100 ms ([`poll`]). Each applies what the others publish. While that
//!   channel works (on PostgreSQL a heartbeat proves it every second; on SQLite each read does),
//!   entries live up to [`PUSHED_TTL`]. When it does not, an entry lives at most [`TTL`] after its
//!   load began, so a change committed anywhere is seen everywhere within [`TTL`] < 1 s. Whenever
//!   the channel comes back, everything loaded before is dropped ([`Cache::forget_everything`]).
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
        Arc, OnceLock, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};

/// How long an entry may be served after its load began, when forgets are not pushed.
pub const TTL: Duration = Duration::from_millis(500);

/// How long an entry may be served while other instances' forgets arrive pushed. The push makes
/// a change seen in milliseconds; this bounds what it cannot cover: a forget that another
/// instance could not publish (its writer busy, its pool exhausted, the instance dead between its
/// commit and its `NOTIFY`). Nothing here can tell that a publisher failed, so the bound is the
/// one promised (within one second), until forgets are published inside their transactions.
pub const PUSHED_TTL: Duration = Duration::from_secs(1);

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
    /// True while other instances' forgets arrive pushed.
    pushed: AtomicBool,
    sessions: Shelf<SessionKey, Record>,
    members: Shelf<Box<str>, Entry>,
    keys: Shelf<Box<str>, Entry>,
    /// Where this process's forgets go to be published, on PostgreSQL.
    outbox: OnceLock<wire::Outbox>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .field("pushed", &self.pushed.load(Ordering::Relaxed))
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
            pushed: AtomicBool::new(false),
            sessions: Shelf::new(entries),
            members: Shelf::new(entries),
            keys: Shelf::new(entries),
            outbox: OnceLock::new(),
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
        if self.pushed.load(Ordering::Acquire) {
            PUSHED_TTL
        } else {
            TTL
        }
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

    /// A cached session record (which may have expired by its own date: the caller checks).
    pub fn session(&self, id: &Id) -> Option<Record> {
        let key = session_key(id);
        let slot = self.sessions.get(&key)?;
        if !self.fresh(&slot, Some(&key)) {
            return None;
        }
        Some(slot.value.clone())
    }

    /// Stores a session record loaded under `ticket`, with the user it signs in.
    pub fn put_session(&self, ticket: Ticket, record: &Record, user_id: Option<String>) {
        let key = session_key(&record.id);
        if self.current(ticket.at, ticket.generation, user_id.as_deref(), Some(&key)) {
            let slot = Self::slot(ticket, user_id.as_deref(), record.clone());
            self.sessions.insert(key, slot);
        }
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

    /// Forgets one session (after it was saved or deleted), here and, on PostgreSQL, everywhere.
    pub fn forget_session(&self, id: &Id) {
        let forget = Forget::Session(session_key(id));
        self.forget_here(&forget);
        self.publish(forget);
    }

    /// Forgets a user, their subscriptions, their credentials and every session of theirs (after a
    /// commit that changed any of them), here and, on PostgreSQL, everywhere.
    pub fn forget_user(&self, user_id: &str) {
        let forget = Forget::User(user_id.to_owned());
        self.forget_here(&forget);
        self.publish(forget);
    }

    fn publish(&self, forget: Forget) {
        if let Some(outbox) = self.outbox.get() {
            outbox.send(forget);
        }
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

    /// Marks whether other instances' forgets now arrive pushed (entries then live up to
    /// [`PUSHED_TTL`]); set by [`push`]'s listener.
    pub fn set_pushed(&self, pushed: bool) {
        self.pushed.store(pushed, Ordering::Release);
    }

    /// True while other instances' forgets arrive pushed.
    pub fn pushed(&self) -> bool {
        self.pushed.load(Ordering::Acquire)
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
