//! Each table has one owner: the module (with its submodules) whose queries read and write it.
//! Other modules call the owner's functions. The one exception is a read of another module's table inside a single
//! statement (a join, or a guard that must hold in the same statement); each is listed in
//! [`JOINED`] with its reason. Writes (`INSERT INTO`, `UPDATE`, `DELETE FROM`) have no exception.

use std::{collections::BTreeSet, path::Path};

use super::{ModulePath, modules};

/// Every table and the module that owns it.
const OWNERS: &[(&str, &str)] = &[
    ("app_secrets", "db"),
    ("users", "auth::users"),
    ("sessions", "auth::session_store"),
    ("rate_limits", "auth::rate_limit"),
    ("api_keys", "auth::api_keys"),
    ("signing_keys", "auth::signing"),
    ("token_families", "auth::refresh"),
    ("refresh_tokens", "auth::refresh"),
    ("totp_factors", "auth::second_factor::factors"),
    ("recovery_codes", "auth::second_factor::recovery"),
    ("pending_sign_ins", "auth::second_factor::pending"),
    ("sign_in_notice_opt_outs", "auth::devices"),
    ("passkeys", "auth::passkeys::store"),
    ("passkey_users", "auth::passkeys::store"),
    ("webauthn_ceremonies", "auth::passkeys::ceremonies"),
    ("social_identities", "auth::social::identities"),
    ("oauth_flows", "auth::social::flows"),
    ("pending_links", "auth::social::links"),
    ("email_tokens", "email::tokens"),
    ("outbox", "email::outbox"),
    ("billing_customers", "billing::customers"),
    ("checkout_attempts", "billing::checkout::attempts"),
    ("billing_change_leases", "billing::changes::lease"),
    ("subscriptions", "billing::subscriptions"),
    ("stripe_events", "billing::event_log"),
    ("audit_events", "audit"),
    ("audit_sequence", "audit"),
    ("webhook_endpoints", "outbound"),
    ("webhook_attempts", "outbound"),
    ("access_states", "gate::watch"),
    ("access_sweeps", "gate::watch"),
    ("cache_forgets", "cache::poll"),
    ("user_roles", "auth::roles"),
];

/// Reads of another module's table inside one statement: (module, table, why).
const JOINED: &[(&str, &str, &str)] = &[
    (
        "auth::session_store",
        "users",
        "a session is written only while its user's session epoch is the one it was issued \
         under, in the same statement, so a revocation cannot fall between check and write",
    ),
    (
        "billing::event_log",
        "billing_customers",
        "the event's user is found by the statement that stores the event",
    ),
    (
        "billing::customers",
        "users",
        "the address to copy to Stripe is read by the statement that queues it, and the \
         reconciler's list of mapped customers carries their users' addresses",
    ),
    (
        "billing::subscriptions",
        "users",
        "a member is read with their subscriptions in one statement, so the gate sees one state",
    ),
    (
        "billing::subscriptions",
        "user_roles",
        "a member's roles are read by the member statement, so a cache miss is one round trip",
    ),
];

/// A table named by SQL in some code, and whether the statement writes it.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    table: String,
    writes: bool,
}

/// The tables of `known` that SQL in `code` names: after `INTO`, `UPDATE`, `DELETE FROM` (writes),
/// and `FROM`, `JOIN` (reads). SQL keywords are written in capitals in this code base.
fn uses(code: &str, known: &BTreeSet<String>) -> BTreeSet<Use> {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let mut found = BTreeSet::new();
    for (i, pair) in words.windows(2).enumerate() {
        let [keyword, table] = pair else { continue };
        if !known.contains(*table) {
            continue;
        }
        let writes = match *keyword {
            "INTO" | "UPDATE" => true,
            "FROM" => i > 0 && words[i - 1] == "DELETE",
            "JOIN" => false,
            _ => continue,
        };
        found.insert(Use {
            table: table.to_string(),
            writes,
        });
    }
    found
}

/// The tables the migrations create.
fn tables() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("migrations/ is readable") {
        let sql = std::fs::read_to_string(entry.expect("entry").path()).expect("UTF-8");
        for rest in sql.split("CREATE TABLE ").skip(1) {
            let rest = rest.trim_start_matches("IF NOT EXISTS ");
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

fn path_of(module: &str) -> ModulePath {
    module.split("::").map(str::to_owned).collect()
}

/// What in `code` of `module` breaks the ownership rule.
fn breaches(module: &ModulePath, code: &str, known: &BTreeSet<String>) -> Vec<String> {
    let name = module.join("::");
    let mut found = Vec::new();
    for Use { table, writes } in uses(code, known) {
        let owner = OWNERS.iter().find(|(t, _)| *t == table).map(|(_, o)| *o);
        if owner.is_some_and(|o| module.starts_with(&path_of(o))) {
            continue;
        }
        let joined = JOINED
            .iter()
            .any(|(m, t, _)| module.starts_with(&path_of(m)) && *t == table);
        if writes || !joined {
            let verb = if writes { "writes" } else { "reads" };
            let owner = owner.unwrap_or("no one");
            found.push(format!("{name} {verb} {table} (owned by {owner})"));
        }
    }
    found
}

#[test]
fn every_table_has_an_owner_that_exists() {
    let modules = modules();
    for table in tables() {
        let owner = OWNERS.iter().find(|(t, _)| *t == table);
        let Some((_, owner)) = owner else {
            panic!("table {table} has no owner in OWNERS");
        };
        assert!(
            modules.contains_key(&path_of(owner)),
            "{table}'s owner {owner} is not a module"
        );
    }
    for (module, table, _) in JOINED {
        assert!(modules.contains_key(&path_of(module)), "{module} in JOINED");
        assert!(tables().contains(*table), "{table} in JOINED");
    }
}

#[test]
fn each_table_is_queried_only_by_its_owner() {
    let known = tables();
    let found: Vec<String> = modules()
        .iter()
        .flat_map(|(module, code)| breaches(module, code, &known))
        .collect();
    assert!(
        found.is_empty(),
        "queries outside a table's owner:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_query_outside_the_owner_is_caught() {
    let known = tables();
    let gate = path_of("gate");
    let sql = r#"sqlx::query("UPDATE users SET x = 1 WHERE id = $1")"#;
    assert_eq!(
        breaches(&gate, sql, &known),
        ["gate writes users (owned by auth::users)"]
    );
    let read = r#""SELECT a FROM subscriptions s \
         JOIN users u ON u.id = s.user_id""#;
    assert_eq!(
        breaches(&gate, read, &known),
        [
            "gate reads subscriptions (owned by billing::subscriptions)",
            "gate reads users (owned by auth::users)"
        ]
    );
    let delete = r#""DELETE FROM outbox WHERE id = $1""#;
    assert_eq!(
        breaches(&path_of("account::delete"), delete, &known),
        ["account::delete writes outbox (owned by email::outbox)"]
    );
    // A join the owner of the other table allows, and the owner's own queries, pass; a write
    // never does.
    let subs = path_of("billing::subscriptions");
    assert!(breaches(&subs, read, &known).is_empty());
    let write = r#""UPDATE users SET email = $1""#;
    assert_eq!(breaches(&subs, write, &known).len(), 1);
    // Upsert's `DO UPDATE SET` names no table.
    let upsert = r#""INSERT INTO outbox (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET id = $1""#;
    assert!(breaches(&path_of("email::outbox"), upsert, &known).is_empty());
}
