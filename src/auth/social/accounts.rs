//! What a provider identity may do to accounts. An identity linked to an account signs in to it.
//! A new identity with a verified address that no account has makes an account (no password,
//! the address proven). A new identity whose verified address an account has is linked only
//! after the owner confirms, with a link mailed to that address and opened in the browser that
//! asked: never silently. An unverified (or missing) address never makes, links or verifies
//! anything. A signed-in user links and unlinks providers, and cannot unlink the last way in.

use super::{Finished, Identity, identities, identities::Key, links};
use crate::{
    auth::{
        Auth, SignedIn, email_flows, opaque, rate_limit,
        rate_limit::ClientIp,
        users::{self, Email, User},
    },
    email::{self, Kind, Outgoing},
    error::{AppError, Result},
};

/// What a callback comes to.
#[derive(Debug)]
pub enum Outcome {
    /// Sign in as this user: the identity was linked to them, or made their new account.
    SignIn {
        /// The user.
        user: User,
        /// Where to go after.
        next: String,
        /// A paid plan chosen before signing up (`pro/month`): Checkout follows.
        plan: Option<String>,
        /// The account was made just now.
        created: bool,
    },
    /// A signed-in user linked the identity to their account.
    Linked {
        /// Where to go after.
        next: String,
    },
    /// The address has an account: a link to confirm was mailed to it.
    ConfirmByEmail {
        /// The address (as the provider gave it).
        email: String,
    },
}

/// The name of a provider in mail and pages.
fn name_of(state: &Auth, provider: &str) -> String {
    state
        .social
        .get(provider)
        .map_or_else(|| provider.to_owned(), |p| p.name.clone())
}

fn key(id: &Identity) -> Key<'_> {
    Key {
        provider: &id.provider,
        issuer: &id.issuer,
        subject: &id.subject,
    }
}

/// The provider's address, if it is one (shown on the account page; never trusted unverified).
fn shown_address(id: &Identity) -> String {
    id.email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .map(|e| e.display)
        .unwrap_or_default()
}

/// Decides what the identity of a finished flow does (see the module's rules). `signed_in`: the
/// request's session, which a link flow must still be of the account that started it.
pub async fn resolve(
    state: &Auth,
    ip: ClientIp,
    finished: Finished,
    signed_in: Option<SignedIn<'_>>,
) -> Result<Outcome> {
    let id = &finished.identity;
    let now = state.clock.now();
    if let Some(link_user) = &finished.link_user_id {
        let current = signed_in
            .filter(|s| &s.user.id == link_user)
            .ok_or(AppError::SocialStateInvalid)?;
        let mut tx = state.db.begin().await?;
        current.hold_on(&mut tx).await?;
        let shown = shown_address(id);
        if !identities::link_on(&mut tx, link_user, (key(id), &shown), now).await? {
            drop(tx);
            return match identities::user_of(&state.db, key(id)).await? {
                Some(owner) if &owner == link_user => Ok(Outcome::Linked {
                    next: finished.next,
                }),
                _ => Err(AppError::SocialIdentityTaken),
            };
        }
        notify_linked(state, &mut tx, current.user, &id.provider).await?;
        email::commit_and_wake(state, tx).await?;
        tracing::info!(user = %link_user, provider = %id.provider, "provider linked");
        return Ok(Outcome::Linked {
            next: finished.next,
        });
    }
    if let Some(owner) = identities::user_of(&state.db, key(id)).await? {
        let mut conn = state.db.pool.acquire().await?;
        let user = users::find_by_id_on(&mut conn, &owner)
            .await?
            .ok_or(AppError::SocialStateInvalid)?;
        drop(conn);
        identities::used(&state.db, key(id), now).await?;
        return Ok(Outcome::SignIn {
            user,
            next: finished.next,
            plan: finished.plan,
            created: false,
        });
    }
    let email = match (&id.email, id.email_verified) {
        (Some(email), true) => Email::parse(email).map_err(|_| AppError::SocialEmailUnverified)?,
        _ => return Err(AppError::SocialEmailUnverified),
    };
    if let Some(owner) = users::find_by_email(&state.db, &email.normalised).await? {
        return ask_the_owner(state, ip, &finished, &owner, email).await;
    }
    let mut tx = state.db.begin().await?;
    let user = match users::insert_proven_on(&mut tx, &email).await {
        Ok(user) => user,
        // Made by a racing callback (another provider, same address): sign in again.
        Err(AppError::EmailTaken) => return Err(AppError::SocialStateInvalid),
        Err(e) => return Err(e),
    };
    if !identities::link_on(&mut tx, &user.id, (key(id), &email.display), now).await? {
        // Linked by a racing callback of the same identity: that one made the account.
        return Err(AppError::SocialStateInvalid);
    }
    tx.commit().await?;
    tracing::info!(user = %user.id, provider = %id.provider, "account made with a provider");
    Ok(Outcome::SignIn {
        user,
        next: finished.next.clone(),
        plan: finished.plan.clone(),
        created: true,
    })
}

/// A verified address that has an account: a link for the owner to confirm is mailed to it.
async fn ask_the_owner(
    state: &Auth,
    ip: ClientIp,
    finished: &Finished,
    owner: &User,
    email: Email,
) -> Result<Outcome> {
    let id = &finished.identity;
    email_flows::limit_requests(state, ip, &email.normalised).await?;
    let pending = links::Pending {
        user_id: owner.id.clone(),
        provider: id.provider.clone(),
        issuer: id.issuer.clone(),
        subject: id.subject.clone(),
        email: email.normalised.clone(),
        binding_hash: finished.binding_hash.clone(),
        next_path: finished.next.clone(),
    };
    let token = links::create(&state.db, &pending, state.clock.now()).await?;
    let link = format!("{}auth/link?token={token}", state.base_url);
    let mut conn = state.db.pool.acquire().await?;
    email::enqueue(
        state,
        &mut conn,
        Outgoing {
            kind: Kind::LinkIdentity,
            to: &owner.email,
            context: minijinja::context! {
                link,
                provider => name_of(state, &id.provider),
                valid_for => "30 minutes",
            },
            dedupe_key: None,
        },
    )
    .await?;
    drop(conn);
    state.mail_wakeup.notify_one();
    tracing::info!(user = %owner.id, provider = %id.provider, "provider link waits for the owner");
    Ok(Outcome::ConfirmByEmail {
        email: email.display,
    })
}

async fn notify_linked(
    state: &Auth,
    conn: &mut sqlx::AnyConnection,
    user: &User,
    provider: &str,
) -> Result<()> {
    email::enqueue(
        state,
        conn,
        Outgoing {
            kind: Kind::IdentityLinked,
            to: &user.email,
            context: minijinja::context! { provider => name_of(state, provider) },
            dedupe_key: None,
        },
    )
    .await
}

/// Confirms a link mailed by [`resolve`], in the browser that asked (`binding`): the link is
/// used up whatever comes of it; the mailbox is proven (an account whose address was not is taken
/// back from whoever registered it), the identity is linked, and the owner is returned to be
/// signed in, with where to go after.
pub async fn confirm_link(
    state: &Auth,
    token: &str,
    binding: Option<&str>,
) -> Result<(User, String)> {
    let now = state.clock.now();
    let mut taking = state.db.begin().await?;
    let pending = links::take_on(&mut taking, token, now)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    taking.commit().await?;
    let bound = binding.is_some_and(|b| opaque::hash(b) == pending.binding_hash);
    if !bound {
        // Opened in another browser: whoever asked is not here. The link is gone.
        crate::telemetry::security_event("social_link_refused", None, "another_browser");
        return Err(AppError::SocialStateInvalid);
    }
    let mut tx = state.db.begin().await?;
    let mut user = users::find_by_id_on(&mut tx, &pending.user_id)
        .await?
        .ok_or(AppError::TokenInvalid)?;
    let current = Email::parse(&user.email).map_err(|_| AppError::TokenInvalid)?;
    if current.normalised != pending.email {
        return Err(AppError::TokenInvalid);
    }
    email_flows::prove_mailbox(&mut tx, &mut user, false, now).await?;
    let identity = Key {
        provider: &pending.provider,
        issuer: &pending.issuer,
        subject: &pending.subject,
    };
    if !identities::link_on(&mut tx, &user.id, (identity, &pending.email), now).await? {
        return Err(AppError::SocialIdentityTaken);
    }
    notify_linked(state, &mut tx, &user, &pending.provider).await?;
    email::commit_and_wake(state, tx).await?;
    // The address is proven now (and a stranger's password may be gone): cached copies are old.
    state.cache.forget_user(&user.id);
    tracing::info!(user = %user.id, provider = %pending.provider, "provider linked by the owner's confirmation");
    Ok((user, pending.next_path))
}

/// Unlinks the user's identity of `provider`, unless it is their last way in besides email (a
/// password, a passkey, or another provider).
pub async fn unlink(state: &Auth, current: SignedIn<'_>, provider: &str) -> Result<()> {
    let user = current.user;
    let mut tx = state.db.begin().await?;
    current.hold_on(&mut tx).await?;
    if !identities::unlink_on(&mut tx, &user.id, provider).await? {
        return Err(AppError::NotFound);
    }
    // Counted after the unlink, in the transaction that holds the account (which rolls back).
    if crate::auth::ways_in_on(&mut tx, user).await? < 1 {
        return Err(AppError::SocialLastMethod);
    }
    tx.commit().await?;
    tracing::info!(user = %user.id, provider, "provider unlinked");
    Ok(())
}

/// The user's linked identities.
pub async fn linked(state: &Auth, user_id: &str) -> Result<Vec<identities::Linked>> {
    Ok(identities::of_user(&state.db, user_id).await?)
}

/// Whether the user may start linking: a proven address (an identity must not outlive a
/// stranger's pre-registration of it).
pub fn may_link(user: &User) -> Result<()> {
    if user.email_verified {
        Ok(())
    } else {
        Err(AppError::EmailUnverified)
    }
}

/// Limits starts of flows per client address (each stores a row for 10 minutes).
pub async fn limit_starts(state: &Auth, ip: ClientIp) -> Result<()> {
    rate_limit::hit_ip(state, rate_limit::LOGIN_PER_IP, ip).await
}
