//! GitHub: OAuth 2.0 (not OpenID Connect), then its REST API for who signed in: `GET /user` for
//! the stable numeric id, `GET /user/emails` for the primary address and whether GitHub verified
//! it.

use serde::Deserialize;
use url::Url;

use super::{Endpoints, Identity, ProviderError};

/// Where GitHub (or a GitHub Enterprise Server) is.
pub struct GitHub {
    /// The sign-in pages (`https://github.com`).
    pub web: Url,
    /// The REST API (`https://api.github.com`).
    pub api: Url,
}

#[derive(Deserialize)]
struct User {
    id: i64,
}

#[derive(Deserialize)]
struct Address {
    email: String,
    primary: bool,
    verified: bool,
}

fn join(base: &Url, path: &str) -> Result<Url, ProviderError> {
    Url::parse(&format!("{}/{path}", base.as_str().trim_end_matches('/')))
        .map_err(|_| ProviderError::Unavailable("GitHub URL".into()))
}

impl GitHub {
    /// The OAuth endpoints.
    pub fn endpoints(&self) -> Result<Endpoints, ProviderError> {
        Ok(Endpoints {
            authorize: join(&self.web, "login/oauth/authorize")?,
            token: join(&self.web, "login/oauth/access_token")?,
        })
    }

    /// Who the access token belongs to: the numeric id, and the primary address if GitHub
    /// verified it (an unverified one is never used).
    pub async fn identity(
        &self,
        http: &reqwest::Client,
        access_token: &str,
    ) -> Result<Identity, ProviderError> {
        let user: User = self.get(http, "user", access_token).await?;
        let addresses: Vec<Address> = self.get(http, "user/emails", access_token).await?;
        let primary = addresses.into_iter().find(|a| a.primary);
        Ok(Identity {
            provider: "github".into(),
            issuer: self.web.as_str().trim_end_matches('/').to_owned(),
            subject: user.id.to_string(),
            email_verified: primary.as_ref().is_some_and(|a| a.verified),
            email: primary.map(|a| a.email),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        http: &reqwest::Client,
        path: &str,
        token: &str,
    ) -> Result<T, ProviderError> {
        let request = http
            .get(join(&self.api, path)?)
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("user-agent", "tollgate");
        super::answers::json_of(request, &format!("GitHub {path}")).await
    }
}
