//! What an administrator does to one account, for the JSON routes and the pages alike. Each
//! change is an audit event naming the administrator (`admin`, their user id).

use crate::{
    audit::{self, EventJson, Kind},
    auth::{
        devices::{self, DeviceJson},
        refresh::{self, Ending},
        roles, session_store, suspension,
        users::{self, User},
    },
    billing::Billing,
    clock::rfc3339,
    error::{AppError, Result},
    gate::UserJson,
};

/// The user an administrator acts on: 404 for an unknown id.
pub async fn target(state: &Billing, id: &str) -> Result<User> {
    users::find_by_id(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// [`target`], refusing the administrator's own account (`invalid_field` `id`).
pub async fn other(state: &Billing, admin: &str, id: &str) -> Result<User> {
    let user = target(state, id).await?;
    if user.id == admin {
        return Err(AppError::InvalidField("id".into()));
    }
    Ok(user)
}

/// One user as an administrator sees them.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// The user JSON, with their access and roles.
    pub user: UserJson,
    /// When the account was suspended (RFC 3339); `null` when it is not.
    pub suspended_at: Option<String>,
    /// Their live sign-ins: sessions, then token sign-ins (`current` is always false).
    pub devices: Vec<DeviceJson>,
    /// Their events, security and billing, newest first (at most 100).
    pub events: Vec<EventJson>,
}

/// The user's access, roles, devices and events.
pub async fn view(state: &Billing, user: &User) -> Result<UserView> {
    let access = crate::gate::access_for(state, &user.id).await?;
    let events = audit::about(&state.db, &user.id, 100).await?;
    let devices = devices::list_of(state, user, None).await?;
    Ok(UserView {
        user: UserJson::new(user, access),
        suspended_at: user.suspended_at.map(rfc3339),
        devices,
        events,
    })
}

fn entry<'a>(
    kind: Kind,
    admin: &'a str,
    user: &'a User,
    payload: serde_json::Value,
) -> audit::Entry<'a> {
    audit::Entry {
        kind,
        actor: admin,
        subject: Some(&user.id),
        payload,
    }
}

/// Signs the user out everywhere: every session and every token sign-in ends at once.
pub async fn sign_out_everywhere(state: &Billing, admin: &str, user: &User) -> Result<()> {
    let now = state.clock.now();
    let mut tx = state.db.begin().await?;
    session_store::revoke_all_on(&mut tx, &user.id, None).await?;
    refresh::end_all_on(&mut tx, &user.id, Ending::Logout, now).await?;
    let payload = serde_json::json!({"sessions": true});
    audit::record(
        &mut tx,
        now,
        entry(Kind::AdminSignedOut, admin, user, payload),
    )
    .await?;
    state.commit_for(tx, &user.id).await?;
    tracing::info!(user = %user.id, admin = %admin, "signed out everywhere by an administrator");
    Ok(())
}

/// Signs out one of the user's devices; false when it is not one of their live ones.
pub async fn sign_out_device(
    state: &Billing,
    admin: &str,
    user: &User,
    device: &str,
) -> Result<bool> {
    devices::sign_out_one_by(state, &user.id, device, Some(admin)).await
}

/// Reads every subscription of the user's Stripe customer again and applies Stripe's state; how
/// many there were.
pub async fn resync(state: &Billing, admin: &str, user: &User) -> Result<usize> {
    let mut count = 0;
    if let Some(customer) = crate::billing::customers::customer_of(state, &user.id).await? {
        for snap in crate::billing::sync::list_subscriptions(state, &customer).await? {
            crate::billing::checkout::sync_subscription(state, &snap.id, None).await?;
            count += 1;
        }
    }
    let payload = serde_json::json!({"subscriptions": count});
    let entry = entry(Kind::AdminResynced, admin, user, payload);
    audit::record_alone(&state.db, state.clock.now(), entry).await?;
    state.cache.forget_user(&user.id);
    Ok(count)
}

/// Sends the user a new verification link; false (nothing sent) when the address is proven.
pub async fn resend_verification(state: &Billing, admin: &str, user: &User) -> Result<bool> {
    if user.email_verified {
        return Ok(false);
    }
    let mut tx = state.db.begin().await?;
    crate::auth::email_flows::send_verification(state, &mut tx, user).await?;
    let entry = entry(
        Kind::AdminResentVerification,
        admin,
        user,
        serde_json::json!({}),
    );
    audit::record(&mut tx, state.clock.now(), entry).await?;
    crate::email::commit_and_wake(state, tx).await?;
    Ok(true)
}

/// Suspends the account (see [`suspension`]); false when it was already. Not one's own.
pub async fn suspend(
    state: &Billing,
    admin: &str,
    user: &User,
    reason: Option<&str>,
) -> Result<bool> {
    if user.id == admin {
        return Err(AppError::InvalidField("id".into()));
    }
    let done = suspension::suspend(state, &user.id, admin, reason).await?;
    if done {
        tracing::info!(user = %user.id, admin = %admin, "suspended by an administrator");
    }
    Ok(done)
}

/// Lifts the suspension; false when there was none.
pub async fn unsuspend(state: &Billing, admin: &str, user: &User) -> Result<bool> {
    let done = suspension::unsuspend(state, &user.id, admin).await?;
    if done {
        tracing::info!(user = %user.id, admin = %admin, "suspension lifted by an administrator");
    }
    Ok(done)
}

/// Grants a role; false when it was held already.
pub async fn grant_role(state: &Billing, admin: &str, user: &User, role: &str) -> Result<bool> {
    roles::grant(state, &user.id, role, admin).await
}

/// Takes a role back; false when it was not held. Not `admin` from oneself (the command line
/// can), so the area is never left without the one who is using it by a slip.
pub async fn revoke_role(state: &Billing, admin: &str, user: &User, role: &str) -> Result<bool> {
    if !roles::valid(role) || (role == roles::ADMIN && user.id == admin) {
        return Err(AppError::InvalidField(
            if roles::valid(role) { "id" } else { "role" }.into(),
        ));
    }
    roles::revoke(state, &user.id, role, admin).await
}

/// Deletes the account as its owner's deletion does (subscriptions canceled in Stripe first);
/// `account.deleted` names the administrator. Not one's own (the account page does that).
pub async fn delete_account(state: &Billing, admin: &str, user: &User) -> Result<()> {
    if user.id == admin {
        return Err(AppError::InvalidField("id".into()));
    }
    super::super::delete::delete_by_admin(state, user, admin).await
}
