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

/// Stores an empty session numbered `id` of `user`, loaded under `ticket`.
fn put(cache: &Cache, ticket: Ticket, id: i128, user: Option<&str>) {
    let key = session_key(&Id(id));
    cache.put_session(ticket, key, "{}".into(), 4_000_000_000, user);
}

/// The session numbered `id`, if the cache serves it.
fn get(cache: &Cache, id: i128) -> Option<Record> {
    cache.session(&Id(id), &session_key(&Id(id)))
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
fn a_forget_of_someone_else_does_not_stop_a_store() {
    let cache = Cache::default();
    let before = cache.ticket();
    cache.forget_user("u2");
    cache.forget_session(&Id(9));
    cache.put_member(before, "u1", member("one@example.com"));
    put(&cache, before, 1, Some("u1"));
    assert!(cache.member::<Member>("u1").is_some());
    assert!(get(&cache, 1).is_some());
}

#[test]
fn forgetting_a_user_drops_their_sessions_only() {
    let cache = Cache::default();
    let t = cache.ticket();
    put(&cache, t, 1, Some("u1"));
    put(&cache, t, 2, Some("u2"));
    cache.forget_user("u1");
    assert!(get(&cache, 1).is_none());
    assert!(get(&cache, 2).is_some());
}

#[test]
fn forgetting_a_session_drops_it_and_a_racing_load_of_it() {
    let cache = Cache::default();
    put(&cache, cache.ticket(), 1, None);
    let before = cache.ticket();
    cache.forget_session(&Id(1));
    assert!(get(&cache, 1).is_none());
    put(&cache, before, 1, None);
    assert!(get(&cache, 1).is_none(), "stale load stored");
}

#[test]
fn an_entry_stored_just_before_a_forget_of_its_user_is_not_served() {
    // The store passed its check, then the forget came: the stamp, not a scan, stops it.
    let cache = Cache::default();
    let t = cache.ticket();
    put(&cache, t, 1, Some("u1"));
    cache.put_credential(t, "h1", "u1", member("one"));
    cache.forget_user("u1");
    assert!(get(&cache, 1).is_none());
    assert!(cache.credential::<Member>("h1").is_none());
    assert_eq!(
        cache.len().0,
        1,
        "the session entry itself was not looked for"
    );
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

#[test]
fn pushed_entries_live_longer_until_the_channel_goes() {
    let cache = Cache::default();
    cache.confirmed(cache.now());
    let older = Ticket {
        generation: 0,
        at: Instant::now() - TTL - Duration::from_millis(200),
    };
    cache.put_member(older, "u1", member("a@example.com"));
    assert!(cache.member::<Member>("u1").is_some());
    cache.unconfirmed();
    assert!(cache.member::<Member>("u1").is_none());
}

#[test]
fn a_channel_that_stops_confirming_is_not_pushed_after_the_silence() {
    let cache = Cache::default();
    let silence = u64::try_from(SILENCE.as_nanos()).unwrap();
    // Confirmed long enough ago: already lapsed.
    std::thread::sleep(SILENCE + Duration::from_millis(10));
    cache.confirmed(cache.now() - silence - 5_000_000);
    assert!(!cache.pushed());
    cache.confirmed(cache.now());
    assert!(cache.pushed());
    // A confirmation from the future (a forged ping) counts as now, no longer.
    cache.unconfirmed();
    cache.confirmed(u64::MAX);
    assert!(cache.pushed());
    std::thread::sleep(SILENCE + Duration::from_millis(10));
    assert!(!cache.pushed());
}

#[test]
fn forgetting_everything_drops_entries_and_loads_in_flight() {
    let cache = Cache::default();
    cache.put_member(cache.ticket(), "u1", member("a@example.com"));
    let before = cache.ticket();
    cache.forget_here(&Forget::Everything);
    assert!(cache.member::<Member>("u1").is_none());
    cache.put_member(before, "u2", member("b@example.com"));
    assert!(cache.member::<Member>("u2").is_none(), "stale load stored");
    cache.put_member(cache.ticket(), "u2", member("b@example.com"));
    assert!(cache.member::<Member>("u2").is_some());
}

#[test]
fn too_many_stamps_forget_everything_instead() {
    let cache = Cache::default();
    cache.put_member(cache.ticket(), "keep", member("k@example.com"));
    for i in 0..=MAX_STAMPS {
        cache.forget_here(&Forget::Session(Sha256::digest(i.to_le_bytes()).into()));
    }
    assert!(cache.stamps().len() <= MAX_STAMPS);
    assert!(cache.member::<Member>("keep").is_none());
}

#[test]
fn the_shelves_are_bounded() {
    let cache = Cache::new(100);
    for i in 0..1_000 {
        put(&cache, cache.ticket(), i, None);
    }
    assert!(cache.len().0 <= 110, "{:?}", cache.len());
}
