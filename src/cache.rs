//! The in-process cache of sessions, members (what the access decision needs about a user: the
//! gate's `Member`, a user with their subscription rows) and credentials (API keys, verified
//! access tokens), so that the session or key
//! check and the access decision on a hot path cost no database round trip. It knows users only by id: what a
//! member entry holds is the caller's type.
//!
//! Freshness (docs/api.md: after a change, the next request to the instance that made it sees it,
//! and any instance within 1 second):
//! - **This instance**: every write forgets what it changed *after its commit*. A load that was
//!   running while something was forgotten may have read the old state, so a load is only stored
//!   when no forget happened since it began (a global generation counter, checked under the lock).
//! - **Other instances and processes** (PostgreSQL replicas, `tollgate stripe sync`, a second
//!   process on one SQLite file): an entry lives at most [`TTL`], counted from the moment its load
//!   began, so a change committed anywhere is seen everywhere within [`TTL`] < 1 s.
//!
//! Access itself is not cached: it depends on the clock (cancel-at and grace ends), so it is
//! computed from the cached rows on every request.

use std::{
    any::Any,
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tower_sessions::session::{Id, Record};

/// How long an entry may be served after its load began.
pub const TTL: Duration = Duration::from_millis(500);

/// Entries per shelf before expired ones are swept (and, if that frees nothing, all dropped).
const MAX_ENTRIES: usize = 20_000;

/// A member entry: the caller's type, behind one pointer.
type Entry = Arc<dyn Any + Send + Sync>;

/// Taken before a load; the load is stored only if nothing was forgotten since.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    generation: u64,
    at: Instant,
}

struct Shelf<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Shelf<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock leaves a map that is still a valid cache.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entries = self.lock();
        let (at, value) = entries.get(key)?;
        (at.elapsed() < TTL).then(|| value.clone())
    }

    fn put(&self, generation: &AtomicU64, ticket: Ticket, key: K, value: V) {
        let mut entries = self.lock();
        if generation.load(Ordering::Acquire) != ticket.generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (ticket.at, value));
    }
}

/// Sessions by id, members by user id, and credentials by the hash of their secret (with their
/// user, so that forgetting a user forgets their keys and tokens).
pub struct Cache {
    generation: AtomicU64,
    sessions: Shelf<Id, (Option<String>, Record)>,
    members: Shelf<String, Entry>,
    keys: Shelf<String, (String, Entry)>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            generation: AtomicU64::new(0),
            sessions: Shelf::new(),
            members: Shelf::new(),
            keys: Shelf::new(),
        }
    }
}

impl Cache {
    /// Take before reading the database for a later `put_*`.
    pub fn ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation.load(Ordering::Acquire),
            at: Instant::now(),
        }
    }

    /// A cached session record (which may have expired by its own date: the caller checks).
    pub fn session(&self, id: &Id) -> Option<Record> {
        self.sessions.get(id).map(|(_, record)| record)
    }

    /// Stores a session record loaded under `ticket`, with the user it signs in.
    pub fn put_session(&self, ticket: Ticket, record: &Record, user_id: Option<String>) {
        self.sessions.put(
            &self.generation,
            ticket,
            record.id,
            (user_id, record.clone()),
        );
    }

    /// The member cached for `user_id`, if there is one of type `M`.
    pub fn member<M: Any + Send + Sync>(&self, user_id: &str) -> Option<Arc<M>> {
        self.members.get(user_id)?.downcast().ok()
    }

    /// Stores `member` for `user_id`, unless something was forgotten since `ticket` was taken.
    pub fn put_member<M: Any + Send + Sync>(&self, ticket: Ticket, user_id: &str, member: Arc<M>) {
        self.members
            .put(&self.generation, ticket, user_id.to_owned(), member);
    }

    /// The credential (an API key, a verified access token) cached under `hash`, if there is
    /// one of type `K`.
    pub fn credential<K: Any + Send + Sync>(&self, hash: &str) -> Option<Arc<K>> {
        self.keys.get(hash)?.1.downcast().ok()
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
        let entry: Entry = key;
        self.keys.put(
            &self.generation,
            ticket,
            hash.to_owned(),
            (user_id.to_owned(), entry),
        );
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Forgets one session (after it was saved or deleted).
    pub fn forget_session(&self, id: &Id) {
        self.bump();
        self.sessions.lock().remove(id);
    }

    /// Forgets a user, their subscriptions, their credentials and every session of theirs (after a
    /// commit that changed any of them).
    pub fn forget_user(&self, user_id: &str) {
        self.bump();
        self.members.lock().remove(user_id);
        self.keys.lock().retain(|_, (_, (uid, _))| uid != user_id);
        self.sessions
            .lock()
            .retain(|_, (_, (uid, _))| uid.as_deref() != Some(user_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Member {
        email: String,
    }

    fn member(email: &str) -> Arc<Member> {
        Arc::new(Member {
            email: email.into(),
        })
    }

    #[test]
    fn forgetting_a_user_forgets_their_api_keys_only() {
        let cache = Cache::default();
        cache.put_credential(cache.ticket(), "h1", "u1", member("one"));
        cache.put_credential(cache.ticket(), "h2", "u2", member("two"));
        cache.forget_user("u1");
        assert!(cache.credential::<Member>("h1").is_none());
        assert_eq!(cache.credential::<Member>("h2").unwrap().email, "two");
    }

    #[test]
    fn a_load_that_raced_with_a_forget_is_not_stored() {
        let cache = Cache::default();
        let before = cache.ticket();
        cache.forget_user("u1");
        cache.put_member(before, "u1", member("old@example.com"));
        assert!(cache.member::<Member>("u1").is_none(), "stale load stored");

        let after = cache.ticket();
        cache.put_member(after, "u1", member("new@example.com"));
        assert_eq!(
            cache.member::<Member>("u1").unwrap().email,
            "new@example.com"
        );
    }

    #[test]
    fn forgetting_a_user_drops_their_sessions_only() {
        let cache = Cache::default();
        let t = cache.ticket();
        let mine = Record {
            id: Id(1),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::now_utc(),
        };
        let theirs = Record {
            id: Id(2),
            ..mine.clone()
        };
        cache.put_session(t, &mine, Some("u1".into()));
        cache.put_session(t, &theirs, Some("u2".into()));
        cache.forget_user("u1");
        assert!(cache.session(&Id(1)).is_none());
        assert!(cache.session(&Id(2)).is_some());
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = Cache::default();
        let old = Ticket {
            generation: 0,
            at: Instant::now() - TTL,
        };
        cache.put_member(old, "u1", member("a@example.com"));
        assert!(cache.member::<Member>("u1").is_none());
    }
}
