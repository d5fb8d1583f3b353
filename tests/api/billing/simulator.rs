//! The Stripe simulator answers as Stripe does: its dev page, list paging, deleted customers,
//! lookup keys and subscription items.

use serde_json::{Value, json};

use crate::helpers::{client, spawn_app, subscription_of};

#[tokio::test]
async fn the_simulator_dev_page_moves_the_shared_clock() {
    let app = spawn_app().await;
    let before = app.state.clock.now();
    let page = client().get(app.sim_url("/_sim/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Simulated date"));

    let r = client()
        .post(app.sim_url("/_sim/"))
        .form(&[("days", "31")])
        .send()
        .await
        .unwrap();

    assert_eq!(r.status(), 303);
    assert!(
        app.state.clock.now() - before >= 31 * 86_400,
        "tollgate's clock moved too"
    );
}

#[tokio::test]
async fn the_simulator_dev_page_has_the_switches_as_buttons_and_a_way_back() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "team").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let page = client()
        .get(app.sim_url("/_sim/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Back to the app"), "{page}");
    assert!(
        page.contains(&app.url("/billing")),
        "links to the app's billing page"
    );
    assert!(page.contains("Make the card decline"));
    let press = |fields: Vec<(&'static str, String)>| {
        let url = app.sim_url("/_sim/");
        async move {
            let r = client().post(url).form(&fields).send().await.unwrap();
            assert_eq!(r.status(), 303);
        }
    };
    // The card button makes the next renewal fail.
    press(vec![
        ("action", "card".into()),
        ("customer", customer.clone()),
        ("on", "true".into()),
    ])
    .await;
    press(vec![("action", "advance".into()), ("days", "31".into())]).await;
    app.wait_for(
        &c,
        |m| m["access"]["status"] == "past_due",
        "a failed renewal",
    )
    .await;
    // The outage button makes Stripe's API answer 503; off again, it answers.
    press(vec![("action", "outage".into()), ("on", "true".into())]).await;
    let r = client()
        .get(app.sim_url("/v1/customers"))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    press(vec![("action", "outage".into()), ("on", "false".into())]).await;
    // Holding webhooks keeps events from tollgate until released.
    press(vec![("action", "hold".into()), ("on", "true".into())]).await;
    let page = client()
        .get(app.sim_url("/_sim/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Hold webhooks: on"), "{page}");
    press(vec![("action", "hold".into()), ("on", "false".into())]).await;
    app.wait_for_webhooks().await;
}

#[tokio::test]
async fn the_simulator_pages_subscription_lists_like_stripe() {
    let app = spawn_app().await;
    for n in 0..3 {
        let c = app.user(&format!("u{n}@example.com")).await;
        let url = app.checkout(&c, "pro", "month").await;
        app.pay(&url).await;
    }
    let first = app.stripe_get("/v1/subscriptions?limit=2").await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["has_more"], true);
    let last = first["data"][1]["id"].as_str().unwrap();
    let rest = app
        .stripe_get(&format!("/v1/subscriptions?limit=2&starting_after={last}"))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["has_more"], false);
    let bad = client()
        .get(app.sim_url("/v1/subscriptions?limit=101"))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "Stripe caps limit at 100");
}

#[tokio::test]
async fn the_simulator_answers_for_a_deleted_customer_as_stripe_does() {
    let app = spawn_app().await;
    let customer = app
        .stripe_post("/v1/customers", &[("email", "x@example.com")])
        .await;
    let id = customer["id"].as_str().unwrap();
    app.delete_in_stripe(id).await;

    let got = app.stripe_get(&format!("/v1/customers/{id}")).await;
    assert_eq!(
        got,
        json!({"id": id, "object": "customer", "deleted": true})
    );
    let session = client()
        .post(app.sim_url("/v1/checkout/sessions"))
        .bearer_auth("sk_test_x")
        .form(&[
            ("mode", "subscription"),
            ("customer", id),
            ("line_items[0][price]", &app.price_of("pro")),
            ("success_url", "http://example.com/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 404);
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "customer");
}

#[tokio::test]
async fn the_simulator_never_charges_a_deleted_customer_through_an_open_session() {
    let app = spawn_app().await;
    let c = app.user("ann@example.com").await;
    let url = app.checkout(&c, "pro", "month").await;
    let customer = app.customer_of("ann@example.com").await.unwrap();
    let deleted = client()
        .delete(app.sim_url(&format!("/v1/customers/{customer}")))
        .bearer_auth("sk_test_simulator")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let paid = app.try_pay(&url).await;
    assert_ne!(
        paid.status(),
        303,
        "a deleted customer's session cannot be paid"
    );
    assert!(app.stripe_subscriptions(&customer).await.is_empty());
}

#[tokio::test]
async fn the_simulator_refuses_a_lookup_key_another_price_holds_unless_it_is_transferred() {
    let app = spawn_app().await;
    let form = |transfer: bool| {
        let mut f = vec![
            ("product_data[name]", "Pro"),
            ("unit_amount", "1900"),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
            ("lookup_key", "pro_month"),
        ];
        if transfer {
            f.push(("transfer_lookup_key", "true"));
        }
        f
    };
    // The demo catalog's pro monthly price holds `pro_month` already.
    let holder = app.price_of("pro");
    let r = client()
        .post(app.sim_url("/v1/prices"))
        .bearer_auth("sk_test_x")
        .form(&form(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["param"],
        "lookup_key"
    );

    let moved = app.stripe_post("/v1/prices", &form(true)).await;
    assert_eq!(moved["lookup_key"], "pro_month");
    let old = app.stripe_get(&format!("/v1/prices/{holder}")).await;
    assert_eq!(old["lookup_key"], Value::Null, "the key moved");
}

#[tokio::test]
async fn the_simulator_changes_subscription_items_as_stripe_does() {
    let app = spawn_app().await;
    let c = app.subscriber("ann@example.com", "pro").await;
    let (sub, _) = subscription_of(&app, "ann@example.com").await;
    let path = format!("/v1/subscriptions/{sub}");
    let truth = app.stripe_get(&path).await;
    let plan_item = truth["items"]["data"][0]["id"].as_str().unwrap().to_owned();

    // A price sent without an item id is added as another item (and billed), never a swap.
    let addon = app.new_price("Extra storage", 500).await;
    let added = app.stripe_post(&path, &[("items[0][price]", &addon)]).await;
    assert_eq!(added["items"]["data"].as_array().unwrap().len(), 2);

    // With the item's id, that item's price changes and nothing else.
    let team = app.price_of("team");
    let switched = app
        .stripe_post(
            &path,
            &[("items[0][id]", &plan_item), ("items[0][price]", &team)],
        )
        .await;
    let items = switched["items"]["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let changed = items
        .iter()
        .find(|i| i["id"] == plan_item.as_str())
        .unwrap();
    assert_eq!(changed["price"]["id"], team.as_str());
    app.wait_for_plan(&c, Some("team")).await;

    // An archived price is refused.
    let old = app.new_price("Old add-on", 100).await;
    app.stripe_post(&format!("/v1/prices/{old}"), &[("active", "false")])
        .await;
    let refused = client()
        .post(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .form(&[("items[0][price]", old.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Stripe's portal switches only single-item subscriptions: this one shows no switch.
    let portal = app.try_portal(&c).await;
    let url = portal.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Cancel now"), "{page}");
    assert!(!page.contains("Switch plan"), "{page}");

    // Once canceled, its items can no longer change.
    let canceled = client()
        .delete(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .send()
        .await
        .unwrap();
    assert!(canceled.status().is_success());
    let refused = client()
        .post(app.sim_url(&path))
        .bearer_auth("sk_test_x")
        .form(&[("items[0][price]", app.price_of("pro").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400, "a canceled subscription");
}

#[tokio::test]
async fn the_simulator_refuses_what_stripe_refuses_with_stripes_error() {
    let app = spawn_app().await;
    let price_form = |amount: &'static str| {
        vec![
            ("unit_amount", amount),
            ("currency", "usd"),
            ("recurring[interval]", "month"),
            ("product_data[name]", "Bad"),
        ]
    };
    let refused = [
        client().get(app.sim_url("/v1/customers/search")),
        client().get(app.sim_url("/v1/subscriptions?status=everything")),
        client()
            .post(app.sim_url("/v1/prices"))
            .form(&price_form("-100")),
    ];
    for (request, param) in refused.into_iter().zip(["query", "status", "unit_amount"]) {
        let r = request.bearer_auth("sk_test_x").send().await.unwrap();
        assert_eq!(r.status(), 400, "{param}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{param}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(param),
            "{param}: {body}"
        );
    }
    // What Stripe accepts still works: a free price, and the `ended` filter.
    app.stripe_post("/v1/prices", &price_form("0")).await;
    let ended = app.stripe_get("/v1/subscriptions?status=ended").await;
    assert_eq!(ended["object"], "list");
}
