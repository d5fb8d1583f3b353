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

/// Parses `bytes` as a JSON object into `T`. A name given twice in one object, at any depth, is
/// `invalid_json`: parsers disagree on which of the two counts (here the last would win silently),
/// so a body that reads one way to a proxy or a log and another to tollgate is refused.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice::<UniqueNames>(bytes).map_err(|_| AppError::InvalidJson)?;
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

/// Any JSON value whose objects never repeat a name (checked while parsing, nothing kept).
struct UniqueNames;

impl<'de> serde::Deserialize<'de> for UniqueNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueNamesVisitor)
    }
}

struct UniqueNamesVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueNamesVisitor {
    type Value = UniqueNames;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without repeated names")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<UniqueNames, E> {
        no_nul(text)
    }
    fn visit_unit<E>(self) -> Result<UniqueNames, E> {
        Ok(UniqueNames)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueNames, A::Error> {
        while seq.next_element::<UniqueNames>()?.is_some() {}
        Ok(UniqueNames)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueNames, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            no_nul(&name)?;
            if !seen.insert(name) {
                return Err(serde::de::Error::custom("a name is repeated"));
            }
            map.next_value::<UniqueNames>()?;
        }
        Ok(UniqueNames)
    }
}

/// A NUL character in a string (a name or a value) is `invalid_json`: no text tollgate stores
/// can hold one (PostgreSQL refuses it), and nobody types one.
fn no_nul<E: serde::de::Error>(text: &str) -> Result<UniqueNames, E> {
    if text.contains('\0') {
        return Err(E::custom("a string holds a NUL character"));
    }
    Ok(UniqueNames)
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
        // A repeated name, also spelled with an escape or nested, is refused.
        for repeated in [
            "{\"email\":\"a\",\"password\":\"b\",\"email\":\"c\"}",
            "{\"email\":\"a\",\"password\":\"b\",\"em\\u0061il\":\"c\"}",
            "{\"email\":\"a\",\"password\":\"b\",\"x\":[{\"y\":1,\"y\":2}]}",
        ] {
            assert_eq!(code(repeated), Err("invalid_json".into()), "{repeated}");
        }
    }

    #[test]
    fn a_nul_character_in_any_string_is_invalid_json() {
        for raw in [
            r#"{"email": "a\u0000@x.io", "password": "p"}"#,
            r#"{"email": "a@x.io", "password": "p", "x\u0000": 1}"#,
            r#"{"email": "a@x.io", "password": "p", "deep": [{"k": "\u0000"}]}"#,
        ] {
            assert_eq!(code(raw), Err("invalid_json".into()), "{raw}");
        }
    }
}
