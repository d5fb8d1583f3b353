//! Signed-in devices: the list (browser family, coarse times, an approximate place only when the
//! deployment supplies one), signing one out or every other, and the "new sign-in" notice.

use reqwest::{Client, redirect::Policy};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, app_with_mail, spawn_app};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

fn browser(agent: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .user_agent(agent)
        .build()
        .unwrap()
}

async fn login(app: &TestApp, c: &Client, extra: Value) -> Value {
    let mut body = json!({"email": "ann@example.com", "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = app.post_json_with(c, "/api/auth/login", &body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn devices(app: &TestApp, c: &Client) -> Value {
    let r = app.get_with(c, "/api/account/devices").await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn the_list_shows_each_sign_in_by_browser_family_and_marks_this_one() {
    let app = TestApp::builder()
        .with("TOLLGATE_LOCATION_HEADER", "CF-IPCountry")
        .spawn()
        .await;
    let laptop = browser(FIREFOX);
    app.register_with(&laptop, "ann@example.com", PASSWORD)
        .await;
    let phone = browser(CHROME);
    let r = phone
        .post(app.url("/api/auth/login"))
        .header("cf-ipcountry", "DE")
        .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    login(&app, &crate::helpers::client(), json!({"token": true})).await;

    let list = devices(&app, &laptop).await;
    assert_eq!(list["sign_in_notices"], true);
    let all = list["devices"].as_array().unwrap();
    assert_eq!(all.len(), 3, "{list}");
    let (sessions, tokens): (Vec<&Value>, Vec<&Value>) =
        all.iter().partition(|d| d["kind"] == "session");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["agent"], Value::Null);
    assert!(tokens[0]["id"].as_str().unwrap().starts_with("fam_"));
    let mine = sessions.iter().find(|d| d["current"] == true).unwrap();
    assert_eq!(mine["agent"], "Firefox on Linux");
    assert_eq!(mine["place"], Value::Null, "no header sent");
    let other = sessions.iter().find(|d| d["current"] == false).unwrap();
    assert_eq!(
        (other["agent"].as_str(), other["place"].as_str()),
        (Some("Chrome on macOS"), Some("DE"))
    );
    assert!(
        other["last_seen_at"].as_str().unwrap().ends_with(":00:00Z"),
        "coarse: {other}"
    );
    // Only the family is kept, never the whole user-agent string.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT data FROM sessions")
        .fetch_all(&app.state.db.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|(d,)| !d.contains("Gecko") && !d.contains("AppleWebKit"))
    );
}

#[tokio::test]
async fn a_place_header_counts_only_when_the_deployment_names_it() {
    let app = spawn_app().await;
    let c = browser(CHROME);
    let r = c
        .post(app.url("/api/auth/register"))
        .header("cf-ipcountry", "DE")
        .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let list = devices(&app, &c).await;
    assert_eq!(list["devices"][0]["place"], Value::Null);
}

#[tokio::test]
async fn signing_out_one_device_ends_it_and_only_its_owner_can() {
    let app = spawn_app().await;
    let laptop = browser(FIREFOX);
    app.register_with(&laptop, "ann@example.com", PASSWORD)
        .await;
    let phone = browser(CHROME);
    login(&app, &phone, json!({})).await;
    let pair = login(&app, &crate::helpers::client(), json!({"token": true})).await;
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let list = devices(&app, &laptop).await;
    let ids: Vec<String> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["current"] == false)
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);

    let stranger = app.user("bob@example.com").await;
    for id in &ids {
        let r = stranger
            .delete(app.url(&format!("/api/account/devices/{id}")))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "not Bob's");
    }
    for bogus in ["nothing", "fam_0", &"0".repeat(64)] {
        let r = laptop
            .delete(app.url(&format!("/api/account/devices/{bogus}")))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bogus}");
    }
    assert_eq!(
        app.get_with(&phone, "/api/me").await.status(),
        200,
        "Bob changed nothing"
    );

    for id in &ids {
        let r = laptop
            .delete(app.url(&format!("/api/account/devices/{id}")))
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    assert_eq!(app.get_with(&phone, "/api/me").await.status(), 401);
    let r = crate::helpers::client()
        .get(app.url("/api/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the token sign-in ended");
    let refresh = json!({"refresh_token": pair["refresh_token"]});
    let r = app
        .post_json_with(
            &crate::helpers::client(),
            "/api/auth/token/refresh",
            &refresh,
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        devices(&app, &laptop).await["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // A token does not manage devices: a session does.
    let pair = login(&app, &crate::helpers::client(), json!({"token": true})).await;
    let r = crate::helpers::client()
        .get(app.url("/api/account/devices"))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn signing_out_everywhere_else_keeps_this_session_only() {
    let app = spawn_app().await;
    let laptop = browser(FIREFOX);
    app.register_with(&laptop, "ann@example.com", PASSWORD)
        .await;
    let phone = browser(CHROME);
    login(&app, &phone, json!({})).await;
    let pair = login(&app, &crate::helpers::client(), json!({"token": true})).await;
    let r = app
        .post_json_with(&laptop, "/api/account/devices/sign-out-others", &json!({}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.get_with(&laptop, "/api/me").await.status(),
        200,
        "this one goes on"
    );
    assert_eq!(app.get_with(&phone, "/api/me").await.status(), 401);
    let refresh = json!({"refresh_token": pair["refresh_token"]});
    let r = app
        .post_json_with(
            &crate::helpers::client(),
            "/api/auth/token/refresh",
            &refresh,
        )
        .await;
    assert_eq!(r.status(), 401);
    let list = devices(&app, &laptop).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["devices"][0]["current"], true);
}

#[tokio::test]
async fn a_browser_new_to_the_account_gets_a_notice_unless_it_is_turned_off() {
    let (app, sink) = app_with_mail(&[]).await;
    let laptop = browser(FIREFOX);
    app.register_with(&laptop, "ann@example.com", PASSWORD)
        .await;
    // Notices go to proven addresses only (an unproven one may be a stranger's).
    let verify = sink
        .wait_for("ann@example.com", 1)
        .await
        .token("verify-email");
    login(&app, &browser(CHROME), json!({})).await;
    let r = app
        .post_json_with(&laptop, "/api/auth/verify-email", &json!({"token": verify}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        sink.notices_to("ann@example.com").is_empty(),
        "unproven: none"
    );

    let phone = browser(CHROME);
    login(&app, &phone, json!({})).await;
    let notice = sink
        .wait_for_subject("ann@example.com", "New sign-in")
        .await;
    assert!(
        notice.text().contains("Chrome on macOS"),
        "{}",
        notice.text()
    );
    assert!(notice.text().contains("/account/devices"));

    // The same browser again: known by its device cookie, no notice. A magic-link request marks
    // the point in the mail by which a notice would have come.
    login(&app, &phone, json!({})).await;
    let ask = json!({"email": "ann@example.com"});
    app.post_json_with(&phone, "/api/auth/magic-link", &ask)
        .await;
    sink.wait_for("ann@example.com", 2).await;
    assert_eq!(
        sink.notices_to("ann@example.com").len(),
        1,
        "no second notice"
    );

    let r = app
        .post_json_with(
            &laptop,
            "/api/account/devices/notices",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(devices(&app, &laptop).await["sign_in_notices"], false);
    login(&app, &browser(CHROME), json!({})).await;
    app.post_json_with(&phone, "/api/auth/magic-link", &ask)
        .await;
    sink.wait_for("ann@example.com", 3).await;
    assert_eq!(
        sink.notices_to("ann@example.com").len(),
        1,
        "notices are off"
    );

    let r = app
        .post_json_with(
            &laptop,
            "/api/account/devices/notices",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(r.status(), 204);
    login(&app, &browser(CHROME), json!({})).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sink.notices_to("ann@example.com").len() < 2 {
        assert!(std::time::Instant::now() < deadline, "on again: a notice");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_devices_page_lists_and_signs_out() {
    let app = spawn_app().await;
    let laptop = browser(FIREFOX);
    app.register_with(&laptop, "ann@example.com", PASSWORD)
        .await;
    let phone = browser(CHROME);
    login(&app, &phone, json!({})).await;
    let page = crate::helpers::page_text(&laptop, &app.url("/account/devices")).await;
    assert!(
        page.contains("Firefox on Linux") && page.contains("Chrome on macOS"),
        "{page}"
    );
    assert!(page.contains("this device"));
    let csrf = app.csrf_token(&laptop, "/account/devices").await;
    let r = laptop
        .post(app.url("/account/devices/sign-out-others"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/account/devices?notice=signed_out_others"
    );
    assert_eq!(app.get_with(&phone, "/api/me").await.status(), 401);
    let page = crate::helpers::page_text(
        &laptop,
        &app.url("/account/devices?notice=signed_out_others"),
    )
    .await;
    assert!(page.contains("Every other device was signed out"));
    assert!(!page.contains("Chrome on macOS"));
}

/// The devices page writes its times in the reader's language (`Accept-Language`), in UTC;
/// American English without one.
#[tokio::test]
async fn the_devices_page_writes_times_in_the_readers_language() {
    let app = spawn_app().await;
    let c = browser(FIREFOX);
    app.register_with(&c, "ann@example.com", PASSWORD).await;
    let seen = devices(&app, &c).await["devices"][0]["signed_in_at"]
        .as_str()
        .unwrap()
        .to_owned();
    // "2026-12-14T15:00:00Z" → its month's names and the time of day.
    let month: usize = seen[5..7].parse().unwrap();
    let day: u32 = seen[8..10].parse().unwrap();
    let hour: u32 = seen[11..13].parse().unwrap();
    let (english, german) = crate::helpers::month_names(month);
    let page = |language: Option<&'static str>| {
        let (app, c) = (&app, &c);
        async move {
            let mut request = c.get(app.url("/account/devices"));
            if let Some(l) = language {
                request = request.header("accept-language", l);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.text().await.unwrap()
        }
    };
    let (h12, half) = match hour {
        0 => (12, "AM"),
        h @ 1..=11 => (h, "AM"),
        12 => (12, "PM"),
        h => (h - 12, "PM"),
    };
    let us = page(None).await;
    let year = &seen[..4];
    assert!(
        us.contains(&format!(
            "{english} {day}, {year}, {h12}:{} {half} UTC",
            &seen[14..16]
        )),
        "{us}"
    );
    let de = page(Some("de-DE,de;q=0.9")).await;
    assert!(
        de.contains(&format!(
            "{day}. {german} {year}, {}:{} UTC",
            &seen[11..13],
            &seen[14..16]
        )),
        "{de}"
    );
    assert!(!de.contains(&seen[..10]), "no ISO dates left on the page");
}
