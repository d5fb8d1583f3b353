//! The signed-in devices page: every live sign-in (browsers and token clients) with a sign-out
//! button each, "sign out everywhere else", and the "new sign-in" notice switch.

use axum::{
    Extension, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::context;
use serde::Deserialize;
use tower_sessions::Session;

use super::{
    csrf::CsrfToken,
    page::{CsrfForm, NoFields, NoticeQuery, PageError, member},
    render,
    second_factor::recently_proved,
};
use crate::{auth::devices, state::AppState};

/// The page and its forms.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/account/devices", get(show_devices))
        .route("/account/devices/sign-out", post(submit_sign_out))
        .route(
            "/account/devices/sign-out-others",
            post(submit_sign_out_others),
        )
        .route("/account/devices/notices", post(submit_notices))
}

async fn show_devices(
    State(state): State<AppState>,
    Extension(token): Extension<CsrfToken>,
    Query(q): Query<NoticeQuery>,
    session: Session,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/devices").await?;
    let list = devices::list(&state, user.signed_in()).await?;
    let notices = devices::notices_on(&state, &user.user.id).await?;
    let notice = q.text(&[
        ("signed_out", "That device was signed out."),
        ("not_found", "That device was not signed in any more."),
        (
            "signed_out_others",
            "Every other device was signed out, and no device is trusted to skip the second factor any more.",
        ),
        ("notices_on", "You will get an email when a new browser signs in."),
        ("notices_off", "New sign-in emails are off."),
    ]);
    Ok(render(
        &state,
        StatusCode::OK,
        "devices.html",
        Some(&user),
        Some(&token),
        context! { devices => list, notices, notice },
    ))
}

#[derive(Deserialize)]
struct DeviceForm {
    id: String,
}

async fn submit_sign_out(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<DeviceForm>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/devices").await?;
    // An id that is not (or no longer) one of the user's: the list again, as it is now.
    let done = devices::sign_out_one(&state, &user.user.id, &form.id).await?;
    let notice = if done { "signed_out" } else { "not_found" };
    Ok(Redirect::to(&format!("/account/devices?notice={notice}")).into_response())
}

async fn submit_sign_out_others(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(NoFields {}): CsrfForm<NoFields>,
) -> Result<Response, PageError> {
    let user = member(&state, session, "/account/devices").await?;
    let epoch = devices::sign_out_others(&state, user.signed_in()).await?;
    let mut response = Redirect::to("/account/devices?notice=signed_out_others").into_response();
    let cookie = crate::auth::device::issue(&state, &user.user.id, epoch);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
struct NoticesForm {
    /// The box: present when ticked.
    enabled: Option<String>,
}

async fn submit_notices(
    State(state): State<AppState>,
    session: Session,
    CsrfForm(form): CsrfForm<NoticesForm>,
) -> Result<Response, PageError> {
    let on = form.enabled.is_some();
    // Turning the notices off takes a recent proof (a stolen session must not silence them).
    let user = if on {
        member(&state, session, "/account/devices").await?
    } else {
        recently_proved(&state, session, "/account/devices").await?
    };
    devices::set_notices(&state, user.signed_in(), on).await?;
    let to = if on { "notices_on" } else { "notices_off" };
    Ok(Redirect::to(&format!("/account/devices?notice={to}")).into_response())
}
