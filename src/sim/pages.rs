//! The simulator's hosted pages: Checkout (pay with a test card, or have it declined) and the
//! customer portal (switch plan, cancel at period end, cancel now, resume).

use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Simulator, objects,
    state::{CheckoutState, SimState},
};

pub(super) fn router() -> Router<Simulator> {
    Router::new()
        .route("/checkout/{id}", get(show_checkout).post(submit_checkout))
        .route("/portal/{id}", get(show_portal).post(submit_portal))
        .route("/invoice/{id}", get(show_invoice))
        .route("/invoice/{id}/pdf", get(invoice_pdf))
}

pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(super) fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Stripe simulator</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1a1a2e}}\
         .banner{{background:#fff4e5;border:1px solid #f79009;padding:.5rem .75rem;border-radius:6px;font-size:.9rem}}\
         button{{font:inherit;padding:.5rem 1rem;margin:.25rem .25rem .25rem 0;border-radius:6px;border:1px solid #3538cd;background:#3538cd;color:#fff;cursor:pointer}}\
         button.secondary{{background:#fff;color:#3538cd}} .error{{color:#b42318;font-weight:600}}\
         .card{{border:1px solid #e4e4ec;border-radius:8px;padding:1rem;margin:1rem 0}}\
         :focus-visible{{outline:3px solid #3538cd;outline-offset:2px}}</style></head><body>\
         <p class=\"banner\" role=\"note\">Stripe simulator — test mode, no real money moves.</p>{body}</body></html>"
    ))
}

fn money(amount: i64, currency: &str) -> String {
    format!(
        "{}{}.{:02} {}",
        if amount < 0 { "-" } else { "" },
        amount.unsigned_abs() / 100,
        amount.unsigned_abs() % 100,
        currency.to_uppercase()
    )
}

/// The hosted invoice page: the invoice's lines, total and status.
async fn show_invoice(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let state = sim.lock();
    let Some(invoice) = state.invoices.get(&id) else {
        return not_found();
    };
    let currency = invoice["currency"].as_str().unwrap_or("usd");
    let mut rows = String::new();
    for line in invoice["lines"]["data"].as_array().into_iter().flatten() {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(line["description"].as_str().unwrap_or("")),
            money(line["amount"].as_i64().unwrap_or(0), currency)
        ));
    }
    let body = format!(
        "<h1>Invoice {}</h1><p>Status: <strong>{}</strong></p><table>{rows}</table>\
         <p>Total: {}</p><p>Amount due: {}</p><p><a href=\"/invoice/{}/pdf\">Download PDF</a></p>",
        escape(invoice["number"].as_str().unwrap_or("")),
        escape(invoice["status"].as_str().unwrap_or("")),
        money(invoice["total"].as_i64().unwrap_or(0), currency),
        money(invoice["amount_due"].as_i64().unwrap_or(0), currency),
        escape(&id)
    );
    page("Invoice", &body).into_response()
}

/// The invoice as a one-page PDF naming its number and total.
async fn invoice_pdf(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let state = sim.lock();
    let Some(invoice) = state.invoices.get(&id) else {
        return not_found();
    };
    let text: String = format!(
        "Invoice {} total {}",
        invoice["number"].as_str().unwrap_or(""),
        money(
            invoice["total"].as_i64().unwrap_or(0),
            invoice["currency"].as_str().unwrap_or("usd")
        )
    )
    .chars()
    .filter(|c| c.is_ascii_alphanumeric() || " .-".contains(*c))
    .collect();
    let stream = format!("BT /F1 14 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (n, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.push_str(&format!("{} 0 obj\n{o}\nendobj\n", n + 1));
    }
    let xref = pdf.len();
    pdf.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for o in offsets {
        pdf.push_str(&format!("{o:010} 00000 n \n"));
    }
    pdf.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    ([(axum::http::header::CONTENT_TYPE, "application/pdf")], pdf).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page("Not found", "<h1>Not found</h1>"),
    )
        .into_response()
}

async fn show_checkout(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let mut state = sim.lock();
    // A session past its `expires_at` shows as expired, not payable.
    let now = sim.clock().now();
    sim.expire_due_sessions(&mut state, now);
    let Some(session) = state.checkout_sessions.get(&id) else {
        return not_found();
    };
    checkout_page(&state, session, None).into_response()
}

fn checkout_page(state: &SimState, session: &CheckoutState, error: Option<&str>) -> Html<String> {
    let o = &session.object;
    let price = state.prices.get(&session.price);
    let product = price
        .and_then(|p| p["product"].as_str())
        .and_then(|p| state.products.get(p))
        .and_then(|p| p["name"].as_str())
        .unwrap_or("Subscription");
    let interval = price
        .and_then(|p| p["recurring"]["interval"].as_str())
        .unwrap_or("month");
    let amount = money(
        o["amount_total"].as_i64().unwrap_or(0),
        o["currency"].as_str().unwrap_or("usd"),
    );
    let trial = session
        .trial_days
        .map(|d| format!("<p>Includes a {d}-day free trial; you pay nothing today.</p>"))
        .unwrap_or_default();
    let status = o["status"].as_str().unwrap_or("");
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let actions = if status == "open" {
        format!(
            "<form method=\"post\"><label>Card number <input name=\"card\" value=\"4242 4242 4242 4242\" readonly></label><br>\
             <button type=\"submit\" name=\"action\" value=\"pay\">Subscribe</button>\
             <button type=\"submit\" name=\"action\" value=\"decline\" class=\"secondary\">Pay with a card that is declined</button></form>\
             <p><a href=\"{}\">Cancel and go back</a></p>",
            escape(o["cancel_url"].as_str().unwrap_or("/"))
        )
    } else {
        format!("<p>This checkout session is {}.</p>", escape(status))
    };
    page(
        "Checkout",
        &format!(
            "<h1>Subscribe to {}</h1><div class=\"card\"><p><strong>{amount}</strong> per {interval}</p>{trial}</div>{error}{actions}",
            escape(product)
        ),
    )
}

#[derive(Deserialize)]
struct CheckoutForm {
    action: String,
}

async fn submit_checkout(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Form(form): Form<CheckoutForm>,
) -> Response {
    let now = sim.clock().now();
    let mut state = sim.lock();
    if !state.checkout_sessions.contains_key(&id) {
        return not_found();
    }
    if form.action == "decline" {
        let session = &state.checkout_sessions[&id];
        return (
            StatusCode::PAYMENT_REQUIRED,
            checkout_page(
                &state,
                session,
                Some("Your card was declined. Try another card or cancel."),
            ),
        )
            .into_response();
    }
    match sim.complete_checkout(&mut state, &id, now) {
        Ok(session) => {
            let url = session["success_url"]
                .as_str()
                .unwrap_or("/")
                .replace("{CHECKOUT_SESSION_ID}", &id);
            Redirect::to(&url).into_response()
        }
        Err(message) => {
            let session = &state.checkout_sessions[&id];
            (
                StatusCode::BAD_REQUEST,
                checkout_page(&state, session, Some(&message)),
            )
                .into_response()
        }
    }
}

async fn show_portal(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let state = sim.lock();
    let Some(session) = state.portal_sessions.get(&id) else {
        return not_found();
    };
    let customer = session["customer"].as_str().unwrap_or("");
    let mut body = String::from("<h1>Manage your subscription</h1>");
    let subs: Vec<&Value> = state
        .subscriptions
        .values()
        .map(|s| &s.object)
        .filter(|s| s["customer"] == customer)
        .collect();
    if subs.is_empty() {
        body.push_str("<p>You have no subscriptions.</p>");
    }
    for sub in subs {
        body.push_str(&subscription_card(&state, sub));
    }
    body.push_str(&format!(
        "<p><a href=\"{}\">Return</a></p>",
        escape(session["return_url"].as_str().unwrap_or("/"))
    ));
    page("Customer portal", &body).into_response()
}

/// One subscription on the portal page: its plan and status, and, until it has ended, the
/// buttons to cancel or resume it and to switch plan.
fn subscription_card(state: &SimState, sub: &Value) -> String {
    let item = &sub["items"]["data"][0];
    let price_id = item["price"]["id"].as_str().unwrap_or("");
    let product = item["price"]["product"]
        .as_str()
        .and_then(|p| state.products.get(p))
        .and_then(|p| p["name"].as_str())
        .unwrap_or(price_id);
    let status = sub["status"].as_str().unwrap_or("");
    let sub_id = sub["id"].as_str().unwrap_or("");
    let mut card = format!(
        "<div class=\"card\"><h2>{}</h2><p>Status: <strong>{}</strong>{}</p>",
        escape(product),
        escape(status),
        if sub["cancel_at_period_end"] == true {
            " — cancels at the end of the period"
        } else {
            ""
        }
    );
    if !objects::ended(Some(status)) {
        let button = |action: &str, label: &str| {
            format!(
                "<form method=\"post\" style=\"display:inline\"><input type=\"hidden\" name=\"subscription\" value=\"{}\">\
                 <button type=\"submit\" name=\"action\" value=\"{action}\">{label}</button></form>",
                escape(sub_id)
            )
        };
        if sub["cancel_at_period_end"] == true {
            card.push_str(&button("resume", "Resume subscription"));
        } else {
            card.push_str(&button("cancel_at_period_end", "Cancel at period end"));
        }
        card.push_str(&button("cancel_now", "Cancel now"));
        let options = switch_options(state, sub, price_id);
        if !options.is_empty() {
            card.push_str(&format!(
                "<form method=\"post\"><input type=\"hidden\" name=\"subscription\" value=\"{}\">\
                 <label>Switch plan <select name=\"price\">{options}</select></label>\
                 <button type=\"submit\" name=\"action\" value=\"switch\" class=\"secondary\">Switch</button></form>",
                escape(sub_id)
            ));
        }
    }
    card.push_str("</div>");
    card
}

/// The `<option>`s of the plans `sub` (now on `price_id`) can switch to. Like Stripe's portal:
/// active prices only, and no plan switch for a subscription of several items.
fn switch_options(state: &SimState, sub: &Value, price_id: &str) -> String {
    let single_item = sub["items"]["data"]
        .as_array()
        .is_some_and(|i| i.len() == 1);
    state
        .prices
        .values()
        .filter(|p| single_item && p["id"] != price_id && p["active"] != false)
        .map(|p| {
            let name = p["product"]
                .as_str()
                .and_then(|id| state.products.get(id))
                .and_then(|prod| prod["name"].as_str())
                .unwrap_or("");
            format!(
                "<option value=\"{}\">{} — {} per {}</option>",
                escape(p["id"].as_str().unwrap_or("")),
                escape(name),
                money(
                    p["unit_amount"].as_i64().unwrap_or(0),
                    p["currency"].as_str().unwrap_or("usd")
                ),
                escape(p["recurring"]["interval"].as_str().unwrap_or(""))
            )
        })
        .collect()
}

#[derive(Deserialize)]
struct PortalForm {
    subscription: String,
    action: String,
    price: Option<String>,
}

async fn submit_portal(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    Form(form): Form<PortalForm>,
) -> Response {
    let now = sim.clock().now();
    let mut state = sim.lock();
    let Some(session) = state.portal_sessions.get(&id) else {
        return not_found();
    };
    let customer = session["customer"].clone();
    // A portal session only manages its own customer's subscriptions.
    let owned = state
        .subscriptions
        .get(&form.subscription)
        .is_some_and(|s| s.object["customer"] == customer);
    if !owned {
        return not_found();
    }
    match sim.portal_action(
        &mut state,
        &form.subscription,
        &form.action,
        form.price.as_deref(),
        now,
    ) {
        Ok(()) => Redirect::to(&format!("/portal/{id}")).into_response(),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            page(
                "Portal",
                &format!("<p class=\"error\">{}</p>", escape(&message)),
            ),
        )
            .into_response(),
    }
}
