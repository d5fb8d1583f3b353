//! Social sign-in: Google and any OpenID Connect issuer (by discovery, the ID token checked by
//! [`oidc`]), and GitHub (OAuth 2.0 and its REST API, [`github`]). The authorization code flow
//! runs through the `oauth2` crate with PKCE (S256); the `state` is stored hashed and bound to
//! the browser that started the flow (a random value in its `tollgate_oauth` cookie, stored
//! hashed), so a callback from another browser (login CSRF) finds nothing. The redirect URI is
//! exact: `{TOLLGATE_BASE_URL}/auth/{provider}/callback`.
//!
//! What an identity may do to accounts (sign in, create, link only with the owner's proof) is
//! [`accounts`]'s.

pub mod accounts;
mod answers;
pub mod flows;
pub mod github;
pub mod identities;
pub mod links;
pub mod oidc;

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
    basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
        BasicTokenType,
    },
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{Auth, opaque};
use crate::{
    config::{Config, Secret, client_pair},
    error::{AppError, Result},
};

/// A provider's authorization and token endpoints.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Where the browser is sent.
    pub authorize: Url,
    /// Where the code is exchanged.
    pub token: Url,
}

/// Who a provider says signed in.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `google`, `github` or `oidc`.
    pub provider: String,
    /// Who vouches for the subject: the OpenID Connect issuer, or GitHub's address.
    pub issuer: String,
    /// The provider's stable id for them.
    pub subject: String,
    /// The address the provider gave, if any.
    pub email: Option<String>,
    /// Whether the provider says it verified that address.
    pub email_verified: bool,
}

/// Why a provider's answer was not taken (logged; people see one readable message per kind).
#[derive(Debug)]
pub enum ProviderError {
    /// The provider could not be reached, or answered nonsense.
    Unavailable(String),
    /// The ID token failed a check.
    IdToken(String),
}

impl From<ProviderError> for AppError {
    fn from(err: ProviderError) -> Self {
        match err {
            ProviderError::Unavailable(why) => {
                // Escaped: a reason may quote what a provider answered.
                tracing::warn!(why = ?why, "sign-in provider unavailable");
                AppError::SocialProviderFailed
            }
            ProviderError::IdToken(why) => {
                crate::telemetry::security_event("id_token_refused", None, &why);
                AppError::SocialProviderFailed
            }
        }
    }
}

enum Kind {
    Oidc(oidc::Issuer),
    GitHub(github::GitHub),
}

/// A configured provider.
pub struct Provider {
    /// `google`, `github` or `oidc`: in its routes.
    pub id: &'static str,
    /// Its name on the buttons.
    pub name: String,
    client_id: String,
    secret: Secret,
    kind: Kind,
}

/// The configured providers, and the HTTP client that talks to them.
pub struct Providers {
    list: Vec<Provider>,
    http: reqwest::Client,
}

/// A provider on a page: its id and name.
#[derive(Clone, Debug, Serialize)]
pub struct Button {
    /// Its id.
    pub id: &'static str,
    /// Its name.
    pub name: String,
}

impl Providers {
    /// The providers the settings turn on.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let s = &config.social;
        let mut list = Vec::new();
        if let Some((id, secret)) = client_pair(&s.google_client_id, &s.google_client_secret) {
            let issuer = Url::parse("https://accounts.google.com")?;
            list.push(Provider {
                id: "google",
                name: "Google".into(),
                client_id: id.to_owned(),
                secret: secret.clone(),
                kind: Kind::Oidc(oidc::Issuer::new(issuer, &["accounts.google.com"])),
            });
        }
        if let Some((id, secret)) = client_pair(&s.github_client_id, &s.github_client_secret) {
            let web = s
                .github_url
                .clone()
                .unwrap_or(Url::parse("https://github.com")?);
            let api = s
                .github_api_url
                .clone()
                .unwrap_or(Url::parse("https://api.github.com")?);
            list.push(Provider {
                id: "github",
                name: "GitHub".into(),
                client_id: id.to_owned(),
                secret: secret.clone(),
                kind: Kind::GitHub(github::GitHub { web, api }),
            });
        }
        if let (Some((id, secret)), Some(issuer)) = (
            client_pair(&s.oidc_client_id, &s.oidc_client_secret),
            &s.oidc_issuer,
        ) {
            list.push(Provider {
                id: "oidc",
                name: s.oidc_name.clone(),
                client_id: id.to_owned(),
                secret: secret.clone(),
                kind: Kind::Oidc(oidc::Issuer::new(issuer.clone(), &[])),
            });
        }
        // Providers' answers are read with a timeout and never followed elsewhere (a redirect
        // from a token endpoint could carry the code to a third party).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { list, http })
    }

    /// The buttons of the configured providers.
    pub fn buttons(&self) -> Vec<Button> {
        self.list
            .iter()
            .map(|p| Button {
                id: p.id,
                name: p.name.clone(),
            })
            .collect()
    }

    /// The provider `id`, if configured.
    pub fn get(&self, id: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.id == id)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenField {}

type TokenAnswer = StandardTokenResponse<IdTokenField, BasicTokenType>;
type ProviderClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The exact redirect URI of `provider`: what to register in its console.
pub fn redirect_uri(state: &Auth, provider: &str) -> String {
    let base = state.base_url.as_str().trim_end_matches('/');
    format!("{base}/auth/{provider}/callback")
}

impl Provider {
    async fn endpoints(&self, http: &reqwest::Client) -> Result<Endpoints, ProviderError> {
        match &self.kind {
            Kind::Oidc(issuer) => issuer.endpoints(http).await,
            Kind::GitHub(github) => github.endpoints(),
        }
    }

    fn client(&self, endpoints: Endpoints, redirect: &str) -> Result<ProviderClient> {
        let bad = |e: url::ParseError| AppError::Internal(anyhow::anyhow!("provider URL: {e}"));
        // GitHub takes the secret in the body; OpenID Connect providers by default in Basic auth.
        let auth_type = match self.kind {
            Kind::GitHub(_) => AuthType::RequestBody,
            Kind::Oidc(_) => AuthType::BasicAuth,
        };
        Ok(oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::from_url(endpoints.authorize))
            .set_token_uri(TokenUrl::from_url(endpoints.token))
            .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(bad)?)
            .set_auth_type(auth_type))
    }
}

/// The name of the cookie that binds a flow to its browser.
pub fn binding_cookie_name(state: &Auth) -> &'static str {
    if state.https() {
        "__Host-tollgate_oauth"
    } else {
        "tollgate_oauth"
    }
}

/// The browser's binding value, if it has a well-formed one.
pub fn binding_of(state: &Auth, headers: &HeaderMap) -> Option<String> {
    crate::auth::device::request_cookie(headers, binding_cookie_name(state))
        .filter(|v| opaque::well_formed(v, ""))
}

/// A flow sent on its way: where to send the browser, and the binding cookie to set.
pub struct Started {
    /// The provider's authorization URL.
    pub authorize_url: Url,
    /// `Set-Cookie` for the browser binding.
    pub cookie: HeaderValue,
}

/// What a flow is for.
#[derive(Clone, Debug, Default)]
pub struct Purpose {
    /// Where to go after (a path of this site).
    pub next: String,
    /// The signed-in account a link is for.
    pub link_user_id: Option<String>,
    /// A paid plan chosen before signing up (`pro/month`).
    pub plan: Option<String>,
}

/// Starts a sign-in (or a link) with `provider`: a flow bound to this browser (`binding`: its
/// cookie value, if it has one).
pub async fn start(
    state: &Auth,
    provider_id: &str,
    purpose: Purpose,
    binding: Option<String>,
) -> Result<Started> {
    let provider = state.social.get(provider_id).ok_or(AppError::NotFound)?;
    let endpoints = provider.endpoints(&state.social.http).await?;
    let client = provider.client(endpoints, &redirect_uri(state, provider.id))?;
    let binding = binding.unwrap_or_else(|| opaque::new(""));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = opaque::new("");
    let csrf = opaque::new("");
    let mut request = client
        .authorize_url(|| CsrfToken::new(csrf.clone()))
        .set_pkce_challenge(challenge);
    request = match provider.kind {
        Kind::Oidc(_) => request
            .add_scope(Scope::new("openid".into()))
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .add_extra_param("nonce", nonce.clone()),
        Kind::GitHub(_) => request
            .add_scope(Scope::new("read:user".into()))
            .add_scope(Scope::new("user:email".into())),
    };
    let (authorize_url, _) = request.url();
    let flow = flows::Flow {
        provider: provider.id.to_owned(),
        binding_hash: opaque::hash(&binding),
        verifier: verifier.secret().clone(),
        nonce,
        next_path: purpose.next,
        link_user_id: purpose.link_user_id,
        plan: purpose.plan,
    };
    flows::create(&state.db, &csrf, &flow, state.clock.now()).await?;
    let secure = if state.https() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={binding}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
        binding_cookie_name(state),
        links::LIFETIME_SECS
    );
    let cookie = HeaderValue::from_str(&cookie).expect("hex and fixed attributes");
    Ok(Started {
        authorize_url,
        cookie,
    })
}

/// What a provider sends the browser back with.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The `state` the flow was sent with.
    pub state: Option<String>,
    /// The provider's refusal (`access_denied` when the user said no).
    pub error: Option<String>,
}

/// A flow back from its provider with who signed in.
pub struct Finished {
    /// Who.
    pub identity: Identity,
    /// Where to go after.
    pub next: String,
    /// The signed-in account a link is for.
    pub link_user_id: Option<String>,
    /// A paid plan chosen before signing up (`pro/month`).
    pub plan: Option<String>,
    /// SHA-256 of the browser binding.
    pub binding_hash: String,
}

/// Finishes a flow at its callback: the flow is taken (once) by its `state`, must belong to
/// this browser and provider, and the code is exchanged with the PKCE verifier; then who signed
/// in, from the ID token (OpenID Connect) or GitHub's API.
pub async fn finish(
    state: &Auth,
    provider_id: &str,
    callback: &Callback,
    binding: Option<&str>,
) -> Result<Finished> {
    let provider = state.social.get(provider_id).ok_or(AppError::NotFound)?;
    let now = state.clock.now();
    let flow = flows::take(&state.db, callback.state.as_deref().unwrap_or(""), now)
        .await?
        .ok_or_else(|| refused("unknown_state"))?;
    let bound = binding.is_some_and(|b| {
        subtle::ConstantTimeEq::ct_eq(opaque::hash(b).as_bytes(), flow.binding_hash.as_bytes())
            .into()
    });
    if !bound {
        return Err(refused("another_browser"));
    }
    if flow.provider != provider.id {
        return Err(refused("another_provider"));
    }
    if let Some(error) = &callback.error {
        // The provider's error code, as a code: nothing a client could shape into a log line.
        let code = code_of(error);
        tracing::info!(provider = provider.id, error = %code, "the provider refused the sign-in");
        return Err(AppError::SocialDenied);
    }
    let code = callback.code.clone().ok_or_else(|| refused("no_code"))?;
    let endpoints = provider.endpoints(&state.social.http).await?;
    let client = provider.client(endpoints, &redirect_uri(state, provider.id))?;
    let http = state.social.http.clone();
    let capped = move |request| {
        let http = http.clone();
        async move { capped_call(&http, request).await }
    };
    let answer = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&capped)
        .await
        .map_err(|e| {
            // Only the error's kind: a provider's own text may quote the code or the verifier.
            let why = match e {
                RequestTokenError::ServerResponse(r) => format!("refused: {}", code_of(r.error())),
                RequestTokenError::Request(e) => format!("unreachable: {e}"),
                RequestTokenError::Parse(..) => "an unreadable answer".to_owned(),
                RequestTokenError::Other(_) => "an unexpected answer".to_owned(),
            };
            ProviderError::Unavailable(format!("token exchange: {why}"))
        })?;
    let identity = match &provider.kind {
        Kind::Oidc(issuer) => {
            let id_token = answer
                .extra_fields()
                .id_token
                .as_deref()
                .ok_or_else(|| ProviderError::IdToken("no ID token".into()))?;
            let check = (provider.client_id.as_str(), flow.nonce.as_str());
            issuer
                .identity(&state.social.http, provider.id, id_token, check)
                .await?
        }
        Kind::GitHub(github) => {
            github
                .identity(&state.social.http, answer.access_token().secret())
                .await?
        }
    };
    Ok(Finished {
        identity,
        next: flow.next_path,
        link_user_id: flow.link_user_id,
        plan: flow.plan,
        binding_hash: flow.binding_hash,
    })
}

/// A provider's error code as logged: one of the codes OAuth 2.0 and OpenID Connect define, or
/// `other` (a provider's own words, or a client's, never reach the log).
fn code_of(code: &impl std::fmt::Display) -> &'static str {
    const KNOWN: [&str; 15] = [
        "access_denied",
        "invalid_request",
        "unauthorized_client",
        "unsupported_response_type",
        "invalid_scope",
        "server_error",
        "temporarily_unavailable",
        "invalid_client",
        "invalid_grant",
        "unsupported_grant_type",
        "login_required",
        "consent_required",
        "interaction_required",
        "account_selection_required",
        "bad_verification_code",
    ];
    let code = code.to_string();
    KNOWN.into_iter().find(|k| *k == code).unwrap_or("other")
}

/// The token endpoint's request, sent by reqwest, its answer read up to 1 MiB.
async fn capped_call(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, std::io::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = answers::capped_body(response, "token endpoint")
        .await
        .map_err(|_| std::io::Error::other("the answer is too large or broke off"))?;
    let mut answer = oauth2::HttpResponse::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn refused(reason: &str) -> AppError {
    crate::telemetry::security_event("social_callback_refused", None, reason);
    AppError::SocialStateInvalid
}
