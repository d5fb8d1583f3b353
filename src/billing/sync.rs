//! `tollgate stripe sync [--dry-run]`: reconcile the subscription-state table with Stripe.
//!
//! For every mapped customer it lists the customer's subscriptions in Stripe and compares them
//! with the local rows. Differences reported: `missing` (in Stripe, not here), `stale` (here, but
//! different), `orphaned` (here, but not in Stripe), `multiple-live` (Stripe has more than one
//! live subscription for the customer: charged twice), `duplicate-customers` (more than one
//! Stripe customer carries the user's id), `plan-mismatch` (a stored plan is not the one the
//! catalog gives the subscription's price), `email-drift` (a customer's email is not its user's)
//! and `failed` (a Stripe call failed: reported, and the run goes on). Without `--dry-run`,
//! missing and stale rows are replaced by Stripe's state, orphaned rows are marked canceled,
//! plans are re-mapped from the catalog and drifted emails set to the user's; duplicate customers
//! and multiple live subscriptions are only reported, since refunding or merging them needs a
//! person.

use std::collections::{BTreeMap, HashMap, HashSet};

use stripe_core::customer::ListCustomer;

use stripe_billing::subscription::{ListSubscription, ListSubscriptionStatus};

use crate::{
    billing::Billing,
    billing::{
        customers::{self, USER_METADATA_KEY},
        stripe::retrying,
        subscriptions::{self, Priced, Snapshot},
    },
    error::AppError,
};

/// One difference between tollgate and Stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    /// `missing`, `stale`, `orphaned`, `multiple-live`, `duplicate-customers`,
    /// `plan-mismatch`, `email-drift` or `failed`.
    pub kind: &'static str,
    /// The subscription (or user) concerned.
    pub subject: String,
    /// What differs, for people.
    pub detail: String,
}

/// What a run found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Every difference found.
    pub drifts: Vec<Drift>,
    /// How many were repaired.
    pub repaired: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.drifts {
            writeln!(f, "{:<20} {} {}", d.kind, d.subject, d.detail)?;
        }
        writeln!(
            f,
            "{} difference(s), {} repaired",
            self.drifts.len(),
            self.repaired
        )
    }
}

/// Compares (and with `repair`, fixes) every mapped customer's subscriptions.
pub async fn reconcile(state: &Billing, repair: bool) -> Result<Report, AppError> {
    let customers = customers::mapped(&state.db).await?;
    let mut report = Report::default();
    for customers::Mapped { customer, user } in customers {
        // One failed call is reported and the run carries on with the next customer.
        match reconcile_customer(state, &customer, &user, repair, &mut report).await {
            Err(e @ (AppError::PaymentProviderUnavailable | AppError::Internal(_))) => {
                report.drifts.push(Drift {
                    kind: "failed",
                    subject: customer.clone(),
                    detail: format!("not compared: {e}"),
                });
            }
            other => other?,
        }
    }
    match check_customers(state, repair, &mut report).await {
        Err(e @ (AppError::PaymentProviderUnavailable | AppError::Internal(_))) => {
            report.drifts.push(Drift {
                kind: "failed",
                subject: "customers".into(),
                detail: format!("customers not checked: {e}"),
            });
        }
        other => other?,
    }
    // Plans follow prices: a row whose plan is not the catalog's for its price.
    for m in subscriptions::plan_mismatches(&state.db, &state.catalog).await? {
        report.drifts.push(Drift {
            kind: "plan-mismatch",
            subject: m.id,
            detail: format!(
                "price {}: stored plan {:?}, catalog plan {:?}",
                m.price_id, m.stored, m.wanted
            ),
        });
    }
    if repair {
        report.repaired += subscriptions::remap_plans(state, &state.catalog).await? as usize;
    }
    Ok(report)
}

/// Compares (and with `repair`, fixes) one customer's subscriptions.
async fn reconcile_customer(
    state: &Billing,
    customer: &str,
    user: &str,
    repair: bool,
    report: &mut Report,
) -> Result<(), AppError> {
    // The listed states are as new as the moment we asked; their stamps come from the rows as
    // they were before (see `subscriptions::BeforeFetch`).
    let asked_at = state.clock.now();
    let before = subscriptions::BeforeFetch::of_customer(&state.db, customer, asked_at).await?;
    let remote = list_subscriptions(state, customer).await?;
    let live: Vec<&str> = remote
        .iter()
        .filter(|s| !s.status.is_terminal())
        .map(|s| s.id.as_str())
        .collect();
    if live.len() > 1 {
        report.drifts.push(Drift {
            kind: "multiple-live",
            subject: customer.to_owned(),
            detail: live.join(", "),
        });
    }
    let local: HashMap<String, Priced> = subscriptions::of_customer(&state.db, customer)
        .await?
        .into_iter()
        .map(|r| (r.row.id.clone(), r))
        .collect();
    let mut seen = HashSet::new();
    for snap in &remote {
        seen.insert(snap.id.clone());
        if let Some(drift) = drift_of(state, customer, snap, local.get(&snap.id)) {
            report.drifts.push(drift);
            if repair {
                let mut tx = state.db.begin().await?;
                let stamp = subscriptions::Stamp {
                    at: before.stamp(&snap.id),
                    source: subscriptions::Source::Fetched,
                    seen: asked_at,
                };
                subscriptions::apply(&mut tx, &state.catalog, snap, user, stamp).await?;
                state.commit_for(tx, user).await?;
                report.repaired += 1;
            }
        }
    }
    // A local row Stripe does not know that still grants something; once canceled it is inert.
    let orphans = local
        .values()
        .filter(|r| !seen.contains(&r.row.id) && !r.row.status.is_terminal())
        .map(|r| &r.row.id);
    for id in orphans {
        report.drifts.push(Drift {
            kind: "orphaned",
            subject: id.clone(),
            detail: format!("customer {customer}: not in Stripe"),
        });
        if repair {
            subscriptions::cancel_locally(state, id, user, state.clock.now()).await?;
            report.repaired += 1;
        }
    }
    Ok(())
}

/// How the stored row of `snap` (if any) differs from what Stripe says.
fn drift_of(
    state: &Billing,
    customer: &str,
    snap: &Snapshot,
    stored: Option<&Priced>,
) -> Option<Drift> {
    let Some(Priced { row, price_id, .. }) = stored else {
        return Some(Drift {
            kind: "missing",
            subject: snap.id.clone(),
            detail: format!("customer {customer}: Stripe says {}", snap.status),
        });
    };
    let differs = row.status.as_str() != snap.status.as_str()
        || price_id.as_deref() != snap.plan_item(&state.catalog).map(|i| i.price_id.as_str())
        || row.current_period_end != snap.current_period_end
        || row.cancel_at_period_end != snap.cancel_at_period_end
        || row.cancel_at != snap.cancel_at;
    differs.then(|| Drift {
        kind: "stale",
        subject: snap.id.clone(),
        detail: format!("local status {} / Stripe {}", row.status, snap.status),
    })
}

/// Every subscription Stripe has for `customer`, whatever its status, following the pages.
pub async fn list_subscriptions(
    state: &Billing,
    customer: &str,
) -> Result<Vec<Snapshot>, AppError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = ListSubscription::new()
            .customer(customer)
            .status(ListSubscriptionStatus::All)
            .limit(100);
        if let Some(a) = &after {
            request = request.starting_after(a.as_str());
        }
        let page = retrying(|| request.send(&state.stripe.client)).await?;
        out.extend(page.data.iter().map(Snapshot::from_stripe));
        match (page.has_more, page.data.last()) {
            (true, Some(last)) => after = Some(last.id.to_string()),
            _ => return Ok(out),
        }
    }
}

/// From one paged listing of all customers (not one search call per user): users carried by
/// more than one Stripe customer, and mapped customers whose email is not their user's
/// (`email-drift`, repaired by setting the user's; the report never shows the addresses).
async fn check_customers(
    state: &Billing,
    repair: bool,
    report: &mut Report,
) -> Result<(), AppError> {
    let emails = customers::addresses(&state.db).await?;
    let mut drifted = Vec::new();
    let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = ListCustomer::new().limit(100);
        if let Some(a) = &after {
            request = request.starting_after(a.as_str());
        }
        let page = retrying(|| request.send(&state.stripe.client)).await?;
        for c in &page.data {
            if let Some(email) = emails.get(c.id.as_str())
                && c.email.as_ref() != Some(email)
            {
                drifted.push((c.id.to_string(), email.clone()));
            }
            if let Some(user) = c.metadata.as_ref().and_then(|m| m.get(USER_METADATA_KEY)) {
                by_user
                    .entry(user.clone())
                    .or_default()
                    .push(c.id.to_string());
            }
        }
        match (page.has_more, page.data.last()) {
            (true, Some(last)) => after = Some(last.id.to_string()),
            _ => break,
        }
    }
    report
        .drifts
        .extend(
            by_user
                .into_iter()
                .filter(|(_, ids)| ids.len() > 1)
                .map(|(user, ids)| Drift {
                    kind: "duplicate-customers",
                    subject: user,
                    detail: ids.join(", "),
                }),
        );
    for (customer, email) in drifted {
        report.drifts.push(Drift {
            kind: "email-drift",
            subject: customer.clone(),
            detail: "Stripe's email is not the user's".into(),
        });
        if repair {
            customers::set_email(state, &customer, &email).await?;
            report.repaired += 1;
        }
    }
    Ok(())
}
