//! Roles on users: `admin` is built in, and a product may use names of its own (`support`,
//! `beta`). A role is a name of 1 to 32 lower-case letters, digits, `-` or `_`, starting with a
//! letter. Granting and revoking are audit events; the user's cached access is forgotten on commit.

use sqlx::AnyConnection;

use crate::{
    audit::{self, Entry, Kind},
    base::Base,
    error::AppError,
};

/// The role the admin area requires.
pub const ADMIN: &str = "admin";

/// Whether `role` is a valid role name.
pub fn valid(role: &str) -> bool {
    let mut chars = role.chars();
    (1..=32).contains(&role.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Grants `role` to `user_id` as `actor` (a user id, or `operator` from the command line); false
/// when the user had it already.
pub async fn grant(base: &Base, user_id: &str, role: &str, actor: &str) -> Result<bool, AppError> {
    if !valid(role) {
        return Err(AppError::InvalidField("role".into()));
    }
    let now = base.clock.now();
    let mut tx = base.db.begin().await?;
    let done = sqlx::query(
        "INSERT INTO user_roles (user_id, role, granted_at, granted_by) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, role) DO NOTHING",
    )
    .bind(user_id)
    .bind(role)
    .bind(now)
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    let granted = done.rows_affected() == 1;
    if granted {
        record(&mut tx, Kind::RoleGranted, user_id, role, actor, now).await?;
    }
    base.commit_for(tx, user_id).await?;
    Ok(granted)
}

/// Takes `role` from `user_id`; false when the user did not have it.
pub async fn revoke(base: &Base, user_id: &str, role: &str, actor: &str) -> Result<bool, AppError> {
    let now = base.clock.now();
    let mut tx = base.db.begin().await?;
    let done = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(user_id)
        .bind(role)
        .execute(&mut *tx)
        .await?;
    let revoked = done.rows_affected() == 1;
    if revoked {
        record(&mut tx, Kind::RoleRevoked, user_id, role, actor, now).await?;
    }
    base.commit_for(tx, user_id).await?;
    Ok(revoked)
}

async fn record(
    conn: &mut AnyConnection,
    kind: Kind,
    user_id: &str,
    role: &str,
    actor: &str,
    now: i64,
) -> sqlx::Result<()> {
    let entry = Entry {
        kind,
        actor,
        subject: Some(user_id),
        payload: serde_json::json!({"role": role}),
    };
    audit::record(conn, now, entry).await
}

#[cfg(test)]
mod tests {
    use super::valid;

    #[test]
    fn role_names_are_short_lower_case_words() {
        for good in ["admin", "support", "beta-tester", "tier_2", "a"] {
            assert!(valid(good), "{good}");
        }
        for bad in ["", "Admin", "2fa", "-x", "a b", "a,b", "é", &"a".repeat(33)] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
