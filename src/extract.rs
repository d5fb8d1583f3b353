//! Request extractors whose rejections come out in tollgate's error format.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use crate::error::AppError;

/// JSON body: 400 `invalid_json` unless it is a JSON object, 400 `invalid_field` (naming the
/// field) when a field is missing or mistyped, 413 above the body limit. Unknown fields are
/// ignored. The content type is enforced by the CSRF layer for every unsafe `/api/` request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::InvalidJson
            }
        })?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as a JSON object into `T`.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|_| AppError::InvalidJson)?;
    if !value.is_object() {
        return Err(AppError::InvalidJson);
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." {
            missing_field(&err.inner().to_string()).unwrap_or_default()
        } else {
            path
        };
        AppError::InvalidField(field)
    })
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.split_once("missing field `")?.1;
    Some(rest.split_once('`')?.0.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[expect(dead_code, reason = "fields exist to be parsed")]
    struct Body {
        email: String,
        password: String,
    }

    fn code(raw: &str) -> Result<(), String> {
        parse_object::<Body>(raw.as_bytes())
            .map(|_| ())
            .map_err(|e| match e {
                AppError::InvalidField(f) => format!("invalid_field:{f}"),
                other => other.status_and_code().1.to_owned(),
            })
    }

    #[test]
    fn bodies_map_to_contract_errors() {
        assert_eq!(code("{\"email\":\"a\",\"password\":\"b\",\"x\":1}"), Ok(()));
        assert_eq!(code("not json"), Err("invalid_json".into()));
        assert_eq!(code("[1,2]"), Err("invalid_json".into()));
        assert_eq!(
            code("{\"email\":\"a\"}"),
            Err("invalid_field:password".into())
        );
        assert_eq!(
            code("{\"email\":5,\"password\":\"b\"}"),
            Err("invalid_field:email".into())
        );
    }
}
