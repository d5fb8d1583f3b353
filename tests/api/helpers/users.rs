//! Accounts as a client meets them: sign-up, sign-in, `/api/me`, forms with their CSRF token,
//! cookies, error codes, and requests that carry nothing but a session cookie.

use std::time::Duration;

use reqwest::{Client, Response, header::HeaderMap, redirect::Policy};
use serde_json::{Value, json};

use super::app::{TestApp, client};

/// A password that passes the policy.
pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    /// Registers `email` with `client`; panics unless 201.
    pub async fn register_with(&self, client: &Client, email: &str, password: &str) -> Value {
        let response = self
            .post_json_with(
                client,
                "/api/auth/register",
                &json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), 201, "registration of {email}");
        response.json().await.unwrap()
    }

    /// Registers with this app's client.
    pub async fn register(&self, email: &str, password: &str) -> Value {
        self.register_with(&self.client, email, password).await
    }

    /// Registers a fresh user on a new client and returns the client.
    pub async fn user(&self, email: &str) -> Client {
        let c = client();
        self.register_with(&c, email, PASSWORD).await;
        c
    }

    /// GETs a page and returns its CSRF token (from the form) with the client's cookie set.
    pub async fn csrf_token(&self, client: &Client, page: &str) -> String {
        let html = page_text(client, &self.url(page)).await;
        let marker = "name=\"csrf_token\" value=\"";
        let start = html.find(marker).expect("page has a CSRF field") + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_owned()
    }

    /// The status of a password sign-in as `email` from a fresh client.
    pub async fn login_status(&self, email: &str, password: &str) -> u16 {
        let body = json!({"email": email, "password": password});
        self.post_json_with(&client(), "/api/auth/login", &body)
            .await
            .status()
            .as_u16()
    }

    /// `/api/me` of `c`.
    pub async fn me(&self, c: &Client) -> Value {
        c.get(self.url("/api/me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/api/me` until the access plan is `plan` (10 s deadline).
    pub async fn wait_for_plan(&self, c: &Client, plan: Option<&str>) -> Value {
        self.wait_for(
            c,
            |me| me["access"]["plan"].as_str() == plan,
            &format!("plan {plan:?}"),
        )
        .await
    }

    /// Polls `/api/me` until `done` holds (10 s deadline).
    pub async fn wait_for(&self, c: &Client, done: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let me = self.me(c).await;
            if done(&me) {
                return me;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {me}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Deletes the account signed in on `c`; panics unless 204.
    pub async fn delete_account(&self, c: &Client) {
        let r = self.try_delete_account(c).await;
        assert_eq!(r.status(), 204, "account deleted");
    }

    /// `POST /api/account/delete` with the right password, whatever the answer.
    pub async fn try_delete_account(&self, c: &Client) -> Response {
        self.post_json_with(c, "/api/account/delete", &json!({"password": PASSWORD}))
            .await
    }
}

/// The body of a GET of `url` (the app's or the simulator's) with `client`; panics unless 2xx.
pub async fn page_text(client: &Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("request");
    assert!(
        response.status().is_success(),
        "GET {url}: {}",
        response.status()
    );
    response.text().await.unwrap()
}

/// The `error` code of a JSON error answer (empty when it has none).
pub async fn error_of(response: Response) -> String {
    response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// The session cookie's `name=value` from a response, if it set one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    set_cookie_line(headers, "tollgate_session")
        .map(|line| line.split(';').next().unwrap().to_owned())
}

/// The whole `Set-Cookie` line whose cookie name ends with `name`.
pub fn set_cookie_line(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.split('=').next().is_some_and(|n| n.ends_with(name)))
        .map(str::to_owned)
}

/// A client with no cookie jar that does not follow redirects: it sends only the cookies it is
/// given.
pub fn client_without_jar() -> Client {
    Client::builder().redirect(Policy::none()).build().unwrap()
}

/// Status of `GET /api/me` with only `cookie`.
pub async fn me_status(app: &TestApp, cookie: &str) -> u16 {
    client_without_jar()
        .get(app.url("/api/me"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A JSON POST with only `cookie`.
pub async fn post_with_cookie(app: &TestApp, path: &str, cookie: &str, body: &Value) -> Response {
    client_without_jar()
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("cookie", cookie)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// A month's name in English and in German (`month` 1–12), as pages write dates.
pub fn month_names(month: usize) -> (&'static str, &'static str) {
    const EN: &str =
        "January February March April May June July August September October November December";
    const DE: &str =
        "Januar Februar März April Mai Juni Juli August September Oktober November Dezember";
    let pick = |names: &'static str| names.split(' ').nth(month - 1).expect("a month 1-12");
    (pick(EN), pick(DE))
}
