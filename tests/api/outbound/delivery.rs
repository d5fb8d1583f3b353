//! Deliveries: in order, retried while the receiver is down, stopped at a dead delivery until an
//! administrator retries it, deduped by the receiver when an answer was lost, and delivered once
//! with two instances.

use serde_json::{Value, json};

use super::{
    Place, SECRET, acknowledged, assert_in_order, endpoint, settled, sign_in, types,
    wait_for_endpoint,
};
use crate::{
    admin::administrator,
    helpers::{TestApp, client},
};

const SETTING: &str = "whe_setting";

async fn app_sending_to(place: &Place, max_attempts: &str) -> TestApp {
    TestApp::builder()
        .with("TOLLGATE_WEBHOOK_URL", &place.url())
        .with("TOLLGATE_WEBHOOK_SECRET", SECRET)
        .with("TOLLGATE_WEBHOOK_MAX_ATTEMPTS", max_attempts)
        .spawn()
        .await
}

#[tokio::test]
async fn events_arrive_in_order_through_a_receiver_that_was_down_and_a_dead_delivery() {
    let Some(place) = Place::new() else {
        return;
    };
    let app = app_sending_to(&place, "3").await;
    let receiver = place.start(SECRET).await;
    let ann = app.user("ann@example.com").await;
    let ann_id = app.me(&ann).await["id"].as_str().unwrap().to_owned();
    let r = app
        .post_json_with(&ann, "/api/auth/logout", &json!({}))
        .await;
    assert_eq!(r.status(), 204);
    let handled = place.wait_for(3).await;
    assert_eq!(
        types(&handled),
        ["account.signed_up", "auth.signed_in", "auth.signed_out"]
    );
    assert_in_order(&handled);
    assert!(
        handled
            .iter()
            .all(|e| e["data"]["subject"] == ann_id.as_str())
    );
    assert_eq!(handled[0]["data"]["payload"]["method"], "password");

    // The receiver is down: the delivery fails, and is tried again after 5 s.
    acknowledged(&app, SETTING, &place).await;
    receiver.stop().await;
    sign_in(&app, "ann@example.com").await;
    let failing = wait_for_endpoint(&app, SETTING, |e| e.attempts == 1, "a failed try").await;
    assert_eq!(failing.state(), "retrying");
    assert_eq!(failing.last_error.as_deref(), Some("could not connect"));
    let receiver = place.start(SECRET).await;
    // (The app's clock runs with the wall clock; the test moves it on.)
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    assert_eq!(place.handled().len(), 3, "not before its time");
    app.state.clock.advance(5);
    let handled = place.wait_for(4).await;
    assert_eq!(handled[3]["type"], "auth.signed_in");
    wait_for_endpoint(&app, SETTING, |e| e.attempts == 0, "the tries reset").await;

    // Down for every try (3 here): the delivery is dead and the endpoint stops, so a later
    // event does not overtake it, even once the receiver is back.
    acknowledged(&app, SETTING, &place).await;
    receiver.stop().await;
    sign_in(&app, "ann@example.com").await;
    for (tries, wait) in [(1, 5), (2, 20)] {
        wait_for_endpoint(&app, SETTING, |e| e.attempts == tries, "another try").await;
        app.state.clock.advance(wait);
    }
    let dead = wait_for_endpoint(&app, SETTING, |e| e.dead_at.is_some(), "dead").await;
    assert_eq!((dead.state(), dead.attempts), ("dead", 3));
    let receiver = place.start(SECRET).await;
    let r = app
        .post_json_with(
            &client(),
            "/api/auth/login",
            &json!({"email": "ann@example.com", "password": "wrong password here"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    app.state.clock.advance(100_000);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(place.handled().len(), 4, "a stopped endpoint sends nothing");

    // An administrator sees why, and starts it again: the dead delivery first, then the rest.
    let (admin, _) = administrator(&app).await;
    let view: Value = app
        .get_with(&admin, "/api/admin/webhooks")
        .await
        .json()
        .await
        .unwrap();
    let shown = &view["endpoints"][0];
    assert_eq!(shown["id"], SETTING);
    assert_eq!(shown["source"], "setting");
    assert_eq!(shown["state"], "dead");
    assert_eq!(shown["last_error"], "could not connect");
    assert_eq!(shown["recent_attempts"][0]["status"], Value::Null);
    assert!(
        !view.to_string().contains(&SECRET[6..]),
        "no secret is shown"
    );
    let retry = format!("/api/admin/webhooks/{SETTING}/retry");
    let r = app.post_json_with(&admin, &retry, &json!({})).await;
    assert_eq!(r.status(), 204);
    let handled = place.wait_for(6).await;
    assert_eq!(
        types(&handled[4..6]),
        ["auth.signed_in", "auth.sign_in_failed"]
    );
    assert_in_order(&handled);
    let all = wait_until_type(&place, "admin.webhook_retried").await;
    assert_in_order(&all);
    let retried = all.last().unwrap();
    assert_eq!(retried["data"]["subject"], Value::Null);
    assert_eq!(retried["data"]["payload"]["endpoint"], SETTING);

    // An answer lost (an instance stopped after the receiver answered, before it wrote that
    // down): the events come again with the same ids, and the receiver acts on them once.
    acknowledged(&app, SETTING, &place).await;
    settled(&app, SETTING).await;
    let before = place.handled().len();
    let stored = endpoint(&app, SETTING).await;
    let attempts_before = attempt_count(&app).await;
    sqlx::query("UPDATE webhook_endpoints SET cursor_seq = cursor_seq - 3 WHERE id = $1")
        .bind(SETTING)
        .execute(&app.state.db.pool)
        .await
        .unwrap();
    wait_for_endpoint(
        &app,
        SETTING,
        |e| e.cursor_seq >= stored.cursor_seq,
        "redelivered",
    )
    .await;
    assert_eq!(
        attempt_count(&app).await,
        attempts_before + 3,
        "three delivered again"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(place.handled().len(), before, "and handled once");
    drop(receiver);
}

/// Waits until an event of type `kind` was handled; everything handled.
async fn wait_until_type(place: &Place, kind: &str) -> Vec<Value> {
    for _ in 0..300 {
        let handled = place.handled();
        if handled.iter().any(|e| e["type"] == kind) {
            return handled;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no {kind}: {:#?}", place.handled());
}

async fn attempt_count(app: &TestApp) -> i64 {
    app.count("webhook_attempts").await
}

#[tokio::test]
async fn two_instances_deliver_each_event_once_and_in_order() {
    let Some(place) = Place::new() else {
        return;
    };
    let first = app_sending_to(&place, "10").await;
    let second = first
        .second_instance_with(&[
            ("TOLLGATE_WEBHOOK_URL", &place.url()),
            ("TOLLGATE_WEBHOOK_SECRET", SECRET),
        ])
        .await;
    let _receiver = place.start(SECRET).await;
    for n in 0..8 {
        let app = if n % 2 == 0 { &first } else { &second };
        app.user(&format!("user{n}@example.com")).await;
    }
    let handled = place.wait_for(16).await;
    assert_in_order(&handled);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(place.handled().len(), 16);
    // Once each: one attempt per event, all answered 2xx, whichever instance sent it.
    let rows: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT event_id, status FROM webhook_attempts")
            .fetch_all(&first.state.db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 16, "{rows:?}");
    assert!(rows.iter().all(|(_, status)| *status == Some(204)));
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 16);
}

#[tokio::test]
async fn a_backend_that_never_answers_delays_only_its_own_endpoint() {
    let Some(place) = Place::new() else {
        return;
    };
    let app = app_sending_to(&place, "10").await;
    let _receiver = place.start(SECRET).await;
    // A backend that takes connections and never answers (each try waits out the 10 s timeout).
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/hooks", hang.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((socket, _)) = hang.accept().await {
            held.push(socket);
        }
    });
    let (admin, _) = administrator(&app).await;
    for _ in 0..3 {
        let body = json!({"url": hang_url});
        let r = app
            .post_json_with(&admin, "/api/admin/webhooks", &body)
            .await;
        assert_eq!(r.status(), 201);
    }
    let before = place.wait_for(6).await.len();
    assert_eq!(
        before, 6,
        "the administrator's three events and three endpoints"
    );
    // Three endpoints hang, one after the other they would hold this one back 30 s; each on its
    // own, the events arrive at once (the wait gives up after 15 s).
    app.user("ann@example.com").await;
    let handled = place.wait_for(before + 2).await;
    assert_eq!(
        types(&handled[before..]),
        ["account.signed_up", "auth.signed_in"]
    );
}
