//! The customer portal, and the invoices the billing page lists.

use serde::Serialize;
use stripe::StripeRequest as _;

use super::checkout::RedirectUrl;
use crate::{
    auth::users::User,
    billing::{
        Billing, customers,
        stripe::{
            absent_as_none, idempotent, is_missing, retrying, retrying_with_key, within_deadline,
        },
    },
    error::AppError,
    ids::new_id,
};

/// A Billing Portal session for the user's own customer. A customer Stripe no longer knows (deleted
/// there, its `customer.deleted` not applied yet) is `no_customer`, like one never created.
pub async fn open_portal(state: &Billing, user: &User) -> Result<RedirectUrl, AppError> {
    within_deadline(portal(state, user)).await
}

async fn portal(state: &Billing, user: &User) -> Result<RedirectUrl, AppError> {
    let customer = customers::customer_of(state, &user.id)
        .await?
        .ok_or(AppError::NoCustomer)?;
    let return_url = format!("{}billing", state.base_url);
    let request = stripe_billing::billing_portal_session::CreateBillingPortalSession::new()
        .customer(customer.as_str())
        .return_url(return_url.as_str());
    let key = new_id("idem_portal");
    let session = retrying_with_key(&key, |key| {
        let sent = request
            .customize()
            .request_strategy(idempotent(key))
            .send(&state.stripe.client);
        async move { absent_as_none(sent.await, is_missing) }
    })
    .await?
    .ok_or(AppError::NoCustomer)?;
    Ok(RedirectUrl { url: session.url })
}

/// One line of the billing page's invoice list.
#[derive(Debug, Serialize)]
pub struct InvoiceLine {
    /// Invoice number.
    pub number: String,
    /// Date (YYYY-MM-DD).
    pub date: String,
    /// Amount, formatted.
    pub amount: String,
    /// Stripe's status (`paid`, `open`, …).
    pub status: String,
    /// Stripe's hosted page, when it has one.
    pub url: Option<String>,
    /// Its PDF, when Stripe has one.
    pub pdf: Option<String>,
}

/// The customer's last invoices, newest first (empty when Stripe has none or cannot be reached:
/// the billing page still renders).
pub async fn recent_invoices(state: &Billing, customer: &str) -> Vec<InvoiceLine> {
    let request = stripe_billing::invoice::ListInvoice::new()
        .customer(customer)
        .limit(5);
    let Ok(list) = retrying(|| request.send(&state.stripe.client)).await else {
        return Vec::new();
    };
    list.data
        .iter()
        .map(|i| InvoiceLine {
            number: i.number.clone().unwrap_or_default(),
            date: crate::clock::date(i.created),
            amount: crate::billing::money(i.total, &i.currency.to_string()),
            status: i
                .status
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            url: i.hosted_invoice_url.clone(),
            pdf: i.invoice_pdf.clone(),
        })
        .collect()
}
