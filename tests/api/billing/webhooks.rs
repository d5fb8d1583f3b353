//! The webhook endpoint: signatures, duplicates, unknown types, orphans, oversized bodies, the
//! recorded payloads, live-mode events, a database outage, and two instances on one database.

use serde_json::{Value, json};
use tollgate::sim::delivery::sign;

use crate::helpers::{
    TestApp, client, event, life_of, map_customer, recorded_events, row_of, spawn_app, sub_event,
};

#[tokio::test]
async fn webhook_signatures_are_verified_and_bad_ones_store_nothing() {
    let app = TestApp::builder()
        .with("STRIPE_WEBHOOK_SECRET", "whsec_current,whsec_previous")
        .spawn()
        .await;
    let body = event("evt_sig", "ping.test", app.state.clock.now(), json!({})).to_string();
    let now = app.state.clock.now();
    let good = sign("whsec_current", now, body.as_bytes());
    let cases: Vec<(Option<String>, &str, &str)> = vec![
        (None, &body, "missing header"),
        (Some("nonsense".into()), &body, "malformed header"),
        (
            Some(sign("whsec_wrong", now, body.as_bytes())),
            &body,
            "wrong secret",
        ),
        (
            Some(good.clone()),
            "{\"id\":\"evt_sig\",\"type\":\"x\"}",
            "altered body",
        ),
        (
            Some(sign("whsec_current", now - 360, body.as_bytes())),
            &body,
            "stale timestamp",
        ),
        (
            Some(sign("whsec_current", now + 360, body.as_bytes())),
            &body,
            "future timestamp",
        ),
    ];
    for (header, payload, why) in cases {
        let r = app.post_webhook(payload, header).await;
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "signature_invalid",
            "{why}"
        );
    }
    assert_eq!(app.count("stripe_events").await, 0, "nothing stored");

    let rotated = app
        .post_webhook(&body, Some(sign("whsec_previous", now, body.as_bytes())))
        .await;
    assert_eq!(rotated.status(), 200, "every configured secret is accepted");
    let v1 = good.split_once(",v1=").unwrap().1;
    let several = format!("t={now},v1={},v1={v1}", "0".repeat(64));
    let r = app
        .post_webhook(&body.replace("evt_sig", "evt_sig2"), Some(several.clone()))
        .await;
    assert_eq!(r.status(), 400, "a v1 for another body does not help");
    let r = app
        .post_webhook(
            &body,
            Some(format!("t={now},v1={},v1={v1}", "0".repeat(64))),
        )
        .await;
    assert_eq!(r.status(), 200, "any matching v1 among several");
}

#[tokio::test]
async fn signed_bodies_that_are_not_events_and_odd_signature_headers_store_nothing() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let secret = app.state.stripe.webhook_secrets[0].expose().to_owned();
    let post = |body: Vec<u8>, headers: Vec<Vec<u8>>| {
        let mut r = client()
            .post(app.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .body(body);
        for h in headers {
            r = r.header(
                "stripe-signature",
                reqwest::header::HeaderValue::from_bytes(&h).unwrap(),
            );
        }
        r.send()
    };
    let not_events: [(&[u8], &str); 5] = [
        (b"garbage", "not JSON"),
        (br#"{"id":"evt_a","type":"ping","created":1}"#, "no data"),
        (
            br#"{"id":"evt_b","type":"ping","created":1,"data":{}}"#,
            "no data.object",
        ),
        (
            br#"{"id":"evt_c","id":"evt_d","type":"ping","created":1,"data":{"object":{}}}"#,
            "a repeated key",
        ),
        (
            b"{\"id\":\"evt_\xff\",\"type\":\"ping\",\"created\":1,\"data\":{\"object\":{}}}",
            "not UTF-8",
        ),
    ];
    for (body, why) in not_events {
        let signed = sign(&secret, now, body).into_bytes();
        let r = post(body.to_vec(), vec![signed]).await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_json",
            "{why}"
        );
    }
    let body = event("evt_h", "ping.test", now, json!({})).to_string();
    let good = sign(&secret, now, body.as_bytes()).into_bytes();
    let headers: [(Vec<Vec<u8>>, &str); 2] = [
        (vec![good.clone(), b"t=1,v1=00".to_vec()], "a second header"),
        (vec![b"t=1,v1=\xff".to_vec()], "a header that is not text"),
    ];
    for (headers, why) in headers {
        let r = post(body.clone().into_bytes(), headers).await.unwrap();
        assert_eq!(r.status(), 400, "{why}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "signature_invalid",
            "{why}"
        );
    }
    assert_eq!(app.count("stripe_events").await, 0, "nothing stored");
    let r = post(body.into_bytes(), vec![good]).await.unwrap();
    assert_eq!(r.status(), 200, "the same event, signed once, is taken");
}

#[tokio::test]
async fn duplicates_unknown_types_orphans_and_oversized_bodies() {
    let app = spawn_app().await;
    let now = app.state.clock.now();
    let unknown = event("evt_u", "radar.early_fraud_warning.created", now, json!({}));
    assert_eq!(app.deliver(&unknown).await["outcome"], "ignored");
    assert_eq!(app.deliver(&unknown).await["outcome"], "duplicate");

    let orphan = event(
        "evt_o",
        "customer.subscription.updated",
        now,
        json!({"id": "sub_orphan", "customer": "cus_nobody", "status": "active",
               "items": {"data": [{"price": {"id": "price_x"}, "current_period_end": now + 100}]}}),
    );
    assert_eq!(app.deliver(&orphan).await["outcome"], "orphan");
    assert_eq!(
        app.count("subscriptions").await,
        0,
        "never attached to a guess"
    );
    assert_eq!(app.count("stripe_events").await, 2);

    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 * 1024 + 10));
    let r = app.post_webhook(&huge, Some("t=1,v1=00".into())).await;
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn every_recorded_event_is_accepted_and_applied() {
    let app = spawn_app().await;
    let mut events = recorded_events();
    events.sort_by_key(|(_, e)| (e["created"].as_i64(), e["type"] == "customer.deleted"));
    assert!(events.len() >= 13, "one file per handled type");
    let mut customers: Vec<String> = events
        .iter()
        .filter_map(|(_, e)| {
            let o = &e["data"]["object"];
            o["customer"]
                .as_str()
                .or(o["id"].as_str().filter(|id| id.starts_with("cus_")))
                .map(str::to_owned)
        })
        .collect();
    customers.sort();
    customers.dedup();
    let mut users = std::collections::HashMap::new();
    for (i, customer) in customers.iter().enumerate() {
        let user = map_customer(&app, &format!("recorded{i}@example.com"), customer).await;
        users.insert(customer.clone(), user);
    }

    for (name, event) in &mut events {
        // Checkout names the user who started it: point it at the user mapped here.
        if let Some(customer) = event["data"]["object"]["customer"]
            .as_str()
            .map(str::to_owned)
            && event["data"]["object"].get("client_reference_id").is_some()
        {
            event["data"]["object"]["client_reference_id"] = json!(users[&customer]);
        }
        assert_eq!(&event["type"], name, "file name matches the type");
        let outcome = app.deliver(event).await["outcome"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            ["applied", "recorded", "refetched", "stale"].contains(&outcome.as_str()),
            "{name}: {outcome}"
        );
    }
    assert!(app.count("subscriptions").await >= 1);
    // The recorded customer.updated changed the customer's email in Stripe; logins keep theirs.
    let (changed,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM users WHERE email_norm NOT LIKE 'recorded%@example.com'",
    )
    .fetch_one(&app.state.db.pool)
    .await
    .unwrap();
    assert_eq!(changed, 0, "Stripe never changes a user's email");
}

#[tokio::test]
async fn a_live_mode_event_is_recorded_and_not_applied_under_a_test_key() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    app.map_customer_of(&c, "cus_mode").await;
    let now = app.state.clock.now();
    let mut event = sub_event(
        "evt_live",
        "customer.subscription.created",
        now,
        "sub_mode",
        "cus_mode",
        "active",
    );
    event["data"]["object"]["items"]["data"][0]["price"]["id"] = json!(app.price_of("team"));
    event["livemode"] = json!(true);

    let answer = app.deliver(&event).await;

    assert_eq!(answer["outcome"], "wrong_mode");
    assert_eq!(app.count("subscriptions").await, 0, "nothing applied");
    assert_eq!(app.count("stripe_events").await, 1, "but recorded");
    event["id"] = json!("evt_test");
    event["livemode"] = json!(false);
    assert_eq!(app.deliver(&event).await["outcome"], "applied");
    assert_eq!(app.me(&c).await["access"]["plan"], "team");
}

#[tokio::test]
async fn webhooks_answer_5xx_when_the_database_is_down_so_stripe_retries() {
    let app = spawn_app().await;
    let event = event(
        "evt_db_down",
        "invoice.paid",
        app.state.clock.now(),
        json!({}),
    );
    match app.db.engine() {
        tollgate::db::Engine::Postgres => app.db.drop_now().await,
        tollgate::db::Engine::Sqlite => app.state.db.close().await,
    }

    let r = app.try_deliver(&event).await;

    assert!(r.status().is_server_error(), "{}", r.status());
}

#[tokio::test]
async fn two_instances_on_one_database_apply_each_event_once() {
    let first = spawn_app().await;
    let second = first.second_instance().await;
    let price = first.price_of("pro");
    map_customer(&first, "twice@example.com", "cus_twice").await;
    let stream = life_of(
        "sub_twice",
        "cus_twice",
        &price,
        first.state.clock.now() - 1_000,
    );

    let mut set = tokio::task::JoinSet::new();
    for event in stream.iter().chain(stream.iter()) {
        for app in [
            first.url("/webhooks/stripe"),
            second.url("/webhooks/stripe"),
        ] {
            let body = event.to_string();
            let sig = first.signature(&body);
            set.spawn(async move {
                let r = client()
                    .post(app)
                    .header("stripe-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                r.json::<Value>().await.unwrap()["outcome"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            });
        }
    }
    let outcomes = set.join_all().await;

    let processed = outcomes.iter().filter(|o| *o != "duplicate").count();
    assert_eq!(
        processed,
        stream.len(),
        "each event processed exactly once: {outcomes:?}"
    );
    assert_eq!(first.count("stripe_events").await, stream.len() as i64);
    assert_eq!(row_of(&first, "sub_twice").await[0], "canceled");
}
