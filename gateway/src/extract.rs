//! Extractors for JSON bodies, path and query parameters whose rejections are
//! [`ApiError`]s: the same JSON error shape as everything else, with the field named; and
//! the `If-None-Match` header of a conditional read ([`IfNoneMatch`]).
//!
//! Each wraps axum's own extractor and documents itself in OpenAPI exactly as that one
//! does, so the schema and the parsing cannot drift apart.

use std::convert::Infallible;

use aide::OperationInput;
use aide::generate::GenContext;
use aide::openapi::{HeaderStyle, Operation, Parameter, ParameterData};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use http::request::Parts;
use http::{HeaderValue, header};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Malformed JSON is a 400, a wrong type or unknown field a 422 naming the
/// field, a missing `content-type: application/json` a 415, a body over the limit a 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge(format!(
            "the body is larger than {} KiB",
            farm_proto::limits::MAX_REST_BODY_BYTES / 1024
        ));
    }
    // axum's texts read "<what failed>: <serde's message, led by the field's path>".
    let text = rejection.body_text();
    let detail = text.split_once(": ").map_or(text.as_str(), |(_, d)| d);
    let message = match rejection {
        JsonRejection::JsonDataError(_) => format!("invalid request body: {detail}"),
        JsonRejection::JsonSyntaxError(_) => format!("malformed JSON body: {detail}"),
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON, sent with `content-type: application/json`".into()
        }
        _ => text.clone(),
    };
    ApiError::from_http(status, message)
}

impl<T: JsonSchema> OperationInput for ApiJson<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

/// Path parameters; one that does not parse is a 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::BadRequest(
                format!("invalid path: {}", e.body_text()),
            )),
            Err(other) => {
                tracing::error!(error = %other.body_text(), "Path extraction failed.");
                Err(ApiError::Internal)
            }
        }
    }
}

impl<T: JsonSchema> OperationInput for ApiPath<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Path::<T>::operation_input(ctx, operation);
    }
}

/// Query parameters; one that does not parse is a 400 naming it. Every field of `T` must
/// be optional: the parameter at fault is found by parsing each one alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let whole = Query::<T>::try_from_uri(&parts.uri);
        let error = match whole {
            Ok(Query(value)) => return Ok(Self(value)),
            Err(e) => e,
        };
        let strip = |text: String| {
            text.trim_start_matches("Failed to deserialize query string: ")
                .to_string()
        };
        let raw = parts.uri.query().unwrap_or_default();
        for segment in raw.split('&').filter(|s| !s.is_empty()) {
            let Ok(alone) = format!("/?{segment}").parse::<http::Uri>() else {
                continue;
            };
            if let Err(e) = Query::<T>::try_from_uri(&alone) {
                let name = Query::<Vec<(String, String)>>::try_from_uri(&alone)
                    .ok()
                    .and_then(|Query(pairs)| pairs.into_iter().next())
                    .map_or_else(|| segment.to_string(), |(k, _)| k);
                return Err(ApiError::BadRequest(format!(
                    "query parameter `{name}`: {}",
                    strip(e.body_text())
                )));
            }
        }
        Err(ApiError::BadRequest(format!(
            "invalid query: {}",
            strip(error.body_text())
        )))
    }
}

impl<T: JsonSchema> OperationInput for ApiQuery<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Query::<T>::operation_input(ctx, operation);
    }
}

/// The `If-None-Match` header of a conditional GET: the entity tags of answers the client
/// already holds, from every line of the header. Never rejects: a header that is missing or
/// not text matches nothing.
#[derive(Debug, Clone, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl IfNoneMatch {
    /// Whether the client holds the answer tagged `etag`: the header is `*` or lists it.
    /// Tags compare weakly (a `W/` prefix is ignored), as RFC 9110 asks for this header.
    pub fn matches(&self, etag: &HeaderValue) -> bool {
        let etag = etag.as_bytes();
        self.0
            .iter()
            .filter_map(|line| line.to_str().ok())
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == etag)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // A request without the header, the common case, allocates nothing here.
        let lines = parts.headers.get_all(header::IF_NONE_MATCH);
        Ok(Self(lines.iter().cloned().collect()))
    }
}

impl OperationInput for IfNoneMatch {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let parameter = Parameter::Header {
            parameter_data: ParameterData {
                name: "If-None-Match".into(),
                description: Some(
                    "The `ETag` of an answer you hold: when it is still current the answer is \
                     a 304 without a body."
                        .into(),
                ),
                required: false,
                deprecated: None,
                format: crate::docs::entity_tag_schema(),
                example: None,
                examples: Default::default(),
                explode: None,
                extensions: Default::default(),
            },
            style: HeaderStyle::Simple,
        };
        aide::operation::add_parameters(ctx, operation, [parameter]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_tags_weakly_and_star_matches_anything() {
        let etag = HeaderValue::from_static("\"42\"");
        let header = |value: &'static str| IfNoneMatch(vec![HeaderValue::from_static(value)]);
        assert!(header("\"42\"").matches(&etag));
        assert!(header("W/\"42\"").matches(&etag));
        assert!(header("\"7\", \"42\"").matches(&etag));
        assert!(header("*").matches(&etag));
        assert!(!header("\"7\"").matches(&etag));
        assert!(!header("42").matches(&etag), "a tag is quoted");
        assert!(!header("").matches(&etag));
        assert!(!IfNoneMatch::default().matches(&etag));
        let not_text = HeaderValue::from_bytes(b"\"4\xff\"").unwrap();
        assert!(!IfNoneMatch(vec![not_text.clone()]).matches(&etag));
        let lines = |values: &[&'static str]| {
            IfNoneMatch(values.iter().map(|v| HeaderValue::from_static(v)).collect())
        };
        assert!(
            lines(&["\"7\"", "\"42\""]).matches(&etag),
            "a list split over two lines"
        );
        assert!(!lines(&["\"7\"", "\"8\""]).matches(&etag));
        let after_garbage = IfNoneMatch(vec![not_text, HeaderValue::from_static("\"42\"")]);
        assert!(
            after_garbage.matches(&etag),
            "a line that is not text is skipped"
        );
    }
}
