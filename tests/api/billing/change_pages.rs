//! Plan changes as a person makes them: the pricing page leads a subscriber to a preview, the
//! preview to a confirmation, and the billing page says what happened, with the card, the next
//! charge, a scheduled change and the invoices (hosted page and PDF).

use reqwest::Client;

use crate::helpers::{TestApp, client, page_text, spawn_app};

/// Posts a page form (its CSRF token taken from `page`) and returns where it redirects.
async fn submit(
    app: &TestApp,
    c: &Client,
    page: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> String {
    let token = app.csrf_token(c, page).await;
    let mut form = vec![("csrf_token", token.as_str())];
    form.extend_from_slice(fields);
    let r = c.post(app.url(action)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{action} {fields:?}");
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of hidden field `name` on `html`.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn a_subscriber_switches_plan_from_the_pricing_page_through_a_preview() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    app.advance(15 * 86_400).await;
    app.wait_for(&c, |m| m["access"]["status"] == "active", "paid")
        .await;

    let pricing = page_text(&c, &app.url("/pricing")).await;
    assert!(
        pricing
            .contains("href=\"/billing/change?plan=team&amp;interval=month\">Switch to Team</a>"),
        "{pricing}"
    );
    assert!(
        !pricing.contains("action=\"/billing/checkout\""),
        "no second Checkout"
    );
    let yearly = page_text(&c, &app.url("/pricing?interval=year")).await;
    assert!(yearly.contains("Switch to yearly billing"), "{yearly}");

    let preview = page_text(&c, &app.url("/billing/change?plan=team&interval=month")).await;
    assert!(
        preview.contains("You will be charged <strong>$"),
        "{preview}"
    );
    assert!(preview.contains("Unused time on Pro"), "{preview}");
    let date = field(&preview, "proration_date");
    let to = submit(
        &app,
        &c,
        "/billing/change?plan=team&interval=month",
        "/billing/change",
        &[
            ("plan", "team"),
            ("interval", "month"),
            ("proration_date", &date),
        ],
    )
    .await;
    assert_eq!(to, "/billing?notice=changed");
    let billing = page_text(&c, &app.url(&to)).await;
    assert!(billing.contains("Your plan has changed"), "{billing}");
    assert!(billing.contains("Team · $49.00 per month"), "{billing}");
    assert!(billing.contains("Visa ending in 4242"), "{billing}");
    assert!(
        billing.contains("Next charge</dt><dd>$49.00 on"),
        "{billing}"
    );

    // Every invoice links its hosted page and its PDF.
    let pdf_at = billing.find(">PDF</a>").expect("a PDF link");
    let href = &billing[billing[..pdf_at].rfind("href=\"").unwrap() + 6..pdf_at - 1];
    let pdf = client()
        .get(href.replace("&#x2f;", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));
}

#[tokio::test]
async fn a_downgrade_is_scheduled_kept_and_cancelling_is_confirmed_then_undone() {
    let app = spawn_app().await;
    let c = app.subscriber("bob@example.com", "team").await;

    let preview = page_text(&c, &app.url("/billing/change?plan=pro&interval=month")).await;
    assert!(
        preview.contains("You keep Team until <strong>"),
        "{preview}"
    );
    assert!(
        preview.contains("Nothing is charged or refunded today"),
        "{preview}"
    );
    let to = submit(
        &app,
        &c,
        "/billing/change?plan=pro&interval=month",
        "/billing/change",
        &[("plan", "pro"), ("interval", "month")],
    )
    .await;
    assert_eq!(to, "/billing?notice=scheduled");
    let billing = page_text(&c, &app.url(&to)).await;
    assert!(
        billing.contains("Changes to Pro (per month) on"),
        "{billing}"
    );
    assert!(billing.contains("Keep Team</button>"), "{billing}");
    let to = submit(
        &app,
        &c,
        "/billing",
        "/billing/change",
        &[("plan", "team"), ("interval", "month")],
    )
    .await;
    assert_eq!(to, "/billing?notice=kept");
    assert!(
        !page_text(&c, &app.url(&to))
            .await
            .contains("Scheduled change")
    );

    let confirm = page_text(&c, &app.url("/billing/cancel")).await;
    assert!(
        confirm.contains("Cancel your Team subscription?"),
        "{confirm}"
    );
    assert!(confirm.contains("moves to the Free plan"), "{confirm}");
    let to = submit(&app, &c, "/billing/cancel", "/billing/cancel", &[]).await;
    assert_eq!(to, "/billing?notice=cancelling");
    let billing = page_text(&c, &app.url(&to)).await;
    assert!(
        billing.contains("you will not be charged again"),
        "{billing}"
    );
    assert!(
        billing.contains("Resume subscription</button>"),
        "{billing}"
    );
    assert!(!billing.contains("Next charge"), "{billing}");
    let to = submit(&app, &c, "/billing", "/billing/resume", &[]).await;
    assert_eq!(to, "/billing?notice=resumed");
    assert!(page_text(&c, &app.url(&to)).await.contains("Next charge"));
}

#[tokio::test]
async fn refusals_are_sentences_on_the_billing_page() {
    let app = spawn_app().await;
    let nobody = app.user("cat@example.com").await;
    let billing = page_text(&nobody, &app.url("/billing")).await;
    assert!(billing.contains(">Choose a plan</a>"), "{billing}");
    assert!(!billing.contains("Manage subscription"), "{billing}");
    let r = nobody
        .get(app.url("/billing/change?plan=team&interval=month"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/billing?notice=no_subscription");
    let page = page_text(&nobody, &app.url("/billing?notice=no_subscription")).await;
    assert!(
        page.contains("You have no subscription to change."),
        "{page}"
    );
    // A plan that does not exist leads back to the plans.
    let c = app.subscriber("dan@example.com", "team").await;
    let r = c
        .get(app.url("/billing/change?plan=%00gold&interval=month"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/pricing");

    // A declined card: the sentence, and the plan as it was.
    let customer = app.customer_of("dan@example.com").await.unwrap();
    app.sim_control(
        &format!("/_sim/customers/{customer}/card"),
        &serde_json::json!({"failing": true}),
    )
    .await;
    let to = submit(
        &app,
        &c,
        "/billing",
        "/billing/change",
        &[
            ("plan", "team"),
            ("interval", "year"),
            ("proration_date", "not-a-date"),
        ],
    )
    .await;
    assert_eq!(to, "/billing?notice=preview_expired");
    let to = submit(
        &app,
        &c,
        "/billing",
        "/billing/change",
        &[("plan", "team"), ("interval", "year")],
    )
    .await;
    assert_eq!(to, "/billing?notice=card_declined");
    let page = page_text(&c, &app.url(&to)).await;
    assert!(
        page.contains("Your card was declined, so your plan did not change."),
        "{page}"
    );
    assert!(page.contains("Team · $49.00 per month"), "{page}");
}

#[tokio::test]
async fn the_pricing_page_names_features_compares_plans_and_offers_a_trial_only_once() {
    let app = spawn_app().await;
    let anon = client();
    let page = page_text(&anon, &app.url("/pricing")).await;
    assert!(page.contains("most popular"), "the highlighted plan");
    assert!(page.contains("14-day free trial"));
    assert!(page.contains("<li>Audit log</li>"), "features by name");
    assert!(page.contains("Compare plans"));
    assert!(
        page.contains("See who changed what, and when."),
        "descriptions"
    );
    // "Free" is the plan's name, not also its price.
    assert!(
        page.contains("$0.00 <span class=\"muted\">forever</span>"),
        "{page}"
    );
    assert!(!page.contains(">Free</p>"), "{page}");
    let yearly = page_text(&anon, &app.url("/pricing?interval=year")).await;
    // 12 × $19 − $190 and 12 × $49 − $490.
    assert!(yearly.contains("Save $38.00 a year"), "{yearly}");
    assert!(yearly.contains("Save $98.00 a year"), "{yearly}");

    // Someone who subscribed before gets no second trial, so none is offered.
    let c = app.subscriber("kim@example.com", "team").await;
    let r = app
        .post_json_with(&c, "/api/billing/cancel", &serde_json::json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let page = page_text(&c, &app.url("/pricing")).await;
    assert!(!page.contains("free trial"), "{page}");
}

#[tokio::test]
async fn dates_are_written_in_the_readers_language() {
    let app = spawn_app().await;
    let c = app.subscriber("lea@example.com", "team").await;
    let sub: serde_json::Value = app
        .get_with(&c, "/api/billing/subscription")
        .await
        .json()
        .await
        .unwrap();
    let at = sub["subscription"]["next_charge"]["at"].as_i64().unwrap();
    let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
    let (day, year) = (t.day(), t.year());
    let (english, german) = crate::helpers::month_names(u8::from(t.month()).into());
    let page = |language: Option<&'static str>| {
        let (app, c) = (&app, &c);
        async move {
            let mut request = c.get(app.url("/billing"));
            if let Some(l) = language {
                request = request.header("accept-language", l);
            }
            request.send().await.unwrap().text().await.unwrap()
        }
    };
    let us = page(None).await;
    assert!(
        us.contains(&format!("$49.00 on {english} {day}, {year}")),
        "{us}"
    );
    let de = page(Some("de-DE,de;q=0.9,en;q=0.8")).await;
    assert!(
        de.contains(&format!("$49.00 on {day}. {german} {year}")),
        "{de}"
    );
    let gb = page(Some("en-GB")).await;
    assert!(
        gb.contains(&format!("$49.00 on {day} {english} {year}")),
        "{gb}"
    );
    // A header that is not text is no language: the fallback, never an error.
    let garbled = c
        .get(app.url("/billing"))
        .header(
            "accept-language",
            reqwest::header::HeaderValue::from_bytes(b"de\xff\xfe;q=1").unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), 200);
    let garbled = garbled.text().await.unwrap();
    assert!(
        garbled.contains(&format!("{english} {day}, {year}")),
        "{garbled}"
    );
    let unknown = page(Some("xx-YY, zz;q=0.5")).await;
    assert!(
        unknown.contains(&format!("{english} {day}, {year}")),
        "English fallback"
    );
}
