//! The request extractors of `/api/v1`: a JSON body ([`ApiJson`], objects only, no NUL
//! characters), a path parameter ([`ApiPath`]) and a query string ([`ApiQuery`]) whose
//! rejections are [`ApiError`]s in the API's error shape, never axum's plain text; and
//! [`typed_object`], which tells a bad value (422) from a bad shape (400).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON body whose rejection is an [`ApiError`] (400), never axum's plain text. A string
/// holding a NUL character (`\u0000`) is refused on every database, since PostgreSQL
/// cannot store one.
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    /// Answers `T` as JSON (`application/json`), as `axum::Json` does.
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// Whether a JSON text holds an escaped NUL (`\u0000`) in a string or key.
fn has_escaped_nul(json: &[u8]) -> bool {
    let mut backslashes = 0usize;
    for (i, &b) in json.iter().enumerate() {
        if b == b'\\' {
            backslashes += 1;
            continue;
        }
        if backslashes % 2 == 1 && b == b'u' && json.get(i + 1..i + 5) == Some(b"0000") {
            return true;
        }
        backslashes = 0;
    }
    false
}

/// Whether `headers` declare a JSON body (`application/json` or `application/*+json`).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest(
                "Send the body as JSON with Content-Type: application/json.".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "The request body could not be read: {}",
                    e.body_text()
                ))
            })?;
        if has_escaped_nul(&bytes) {
            return Err(ApiError::BadRequest(
                "Text may not contain NUL characters.".into(),
            ));
        }
        // serde reads a struct from a JSON array too (`[null, null]` as its fields in
        // order); the document calls these bodies objects, so only an object is one.
        if expects_struct::<T>() && bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(ApiError::BadRequest(
                "The request body must be a JSON object.".into(),
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::BadRequest(format!(
                "Invalid request body: {}",
                e.body_text()
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "Send the body as JSON with Content-Type: application/json.".into(),
            )),
            Err(_) => Err(ApiError::BadRequest(
                "The request body is not valid JSON.".into(),
            )),
        }
    }
}

/// Whether `T` deserializes as a struct (a derived `Deserialize` of a struct asks its
/// deserializer for one), found by asking a probe that only records the question.
fn expects_struct<T: DeserializeOwned>() -> bool {
    use serde::de::value::Error;

    struct Probe<'a>(&'a mut bool);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(serde::de::Error::custom("probe"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            _: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = true;
            Err(serde::de::Error::custom("probe"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut is_struct = false;
    let _ = T::deserialize(Probe(&mut is_struct));
    is_struct
}

/// Reads a JSON object into the typed body `T`. A value `T` cannot hold at one of
/// `value_fields` (a time that is no time, a list given as a string) is a 422 naming the
/// field, like a value the server refuses; any other mismatch (a missing or unknown field,
/// a name that is not a string) is a 400.
pub fn typed_object<T: DeserializeOwned>(
    body: serde_json::Map<String, serde_json::Value>,
    value_fields: &[&str],
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(body)).map_err(|e| {
        let field = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
            _ => None,
        };
        match field {
            Some(f) if value_fields.contains(&f.as_str()) => {
                ApiError::Unprocessable(format!("{f} is invalid: {}", e.inner()))
            }
            _ => ApiError::BadRequest(format!("Invalid request body: {e}")),
        }
    })
}

/// A path parameter whose rejection is an [`ApiError`] (404: a malformed id names nothing),
/// never axum's plain text.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| ApiError::NotFound("Not found.".into()))
    }
}

/// A query string whose rejection is an [`ApiError`] (400), never axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escaped_nuls_are_found_and_nothing_else() {
        assert!(has_escaped_nul(br#"{"name":"a\u0000b"}"#));
        assert!(has_escaped_nul(br#"{"a\u0000":1}"#));
        assert!(has_escaped_nul(br#"{"name":"\\\u0000"}"#));
        // An escaped backslash followed by the text `u0000` is no NUL.
        assert!(!has_escaped_nul(br#"{"name":"\\u0000"}"#));
        assert!(!has_escaped_nul(br#"{"name":"\u0001 u0000"}"#));
    }

    #[test]
    fn structs_are_told_from_other_bodies() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Body {
            a: Option<i64>,
        }
        assert!(expects_struct::<Body>());
        assert!(!expects_struct::<Vec<i64>>());
        assert!(!expects_struct::<serde_json::Value>());
        assert!(!expects_struct::<std::collections::HashMap<String, i64>>());
    }

    #[test]
    fn typed_objects_answer_422_only_for_value_fields() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
            rpm: Option<i64>,
        }
        let obj = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let read = |v| typed_object::<Body>(obj(v), &["rpm"]);
        assert!(read(json!({"name": "k", "rpm": 5})).is_ok());
        assert!(
            matches!(read(json!({"name": "k", "rpm": "x"})), Err(ApiError::Unprocessable(m)) if m.starts_with("rpm"))
        );
        for bad in [
            json!({"name": 5}),
            json!({}),
            json!({"name": "k", "bogus": 1}),
        ] {
            assert!(matches!(read(bad), Err(ApiError::BadRequest(_))));
        }
    }

    #[test]
    fn json_content_types() {
        let h = |ct: &str| {
            let mut m = axum::http::HeaderMap::new();
            m.insert("content-type", ct.parse().unwrap());
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        assert!(is_json(&h("application/merge-patch+json")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/jsonx")));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }
}
