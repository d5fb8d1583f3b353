//! Reading a provider's answers: at most 1 MiB, refused as it arrives, with the client's timeout
//! and no redirects (see `Providers`).

use super::ProviderError;

/// The most a provider may answer with (1 MiB).
pub const MAX_BODY: usize = 1 << 20;

/// Reads at most [`MAX_BODY`] bytes of a provider's answer, refusing more as it arrives.
pub async fn capped_body(
    mut response: reqwest::Response,
    what: &str,
) -> Result<Vec<u8>, ProviderError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(ProviderError::Unavailable(format!("{what}: too large")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Unavailable(format!("{what}: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            return Err(ProviderError::Unavailable(format!("{what}: too large")));
        }
    }
    Ok(body)
}

/// Sends `request` and reads its JSON answer (`what` names it in errors).
pub async fn json_of<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, ProviderError> {
    let response = request
        .send()
        .await
        .map_err(|e| ProviderError::Unavailable(format!("{what}: {e}")))?;
    if !response.status().is_success() {
        let status = response.status();
        return Err(ProviderError::Unavailable(format!("{what}: {status}")));
    }
    let bytes = capped_body(response, what).await?;
    serde_json::from_slice(&bytes).map_err(|e| ProviderError::Unavailable(format!("{what}: {e}")))
}
