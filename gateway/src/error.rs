//! The one JSON error shape, and the one place where gRPC statuses become HTTP statuses.
//!
//! Every 4xx and 5xx the gateway sends, including axum's own rejections, an unknown route
//! and a wrong method, has this body:
//!
//! ```json
//! {"error": {"status": 404, "code": "not_found", "message": "server 99 is not part of this farm"}}
//! ```
//!
//! `code` is a stable, lowercase name a program can match on; `message` is for people and
//! names the field at fault when there is one. Internal details (transport errors,
//! addresses, stack traces) never reach a client: they are logged instead.

use std::error::Error as _;

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, Response as ApiResponse, SchemaObject};
use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tonic::Code;

/// A stable name for the kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (bad JSON, a path or query that does not parse).
    BadRequest,
    /// 400: a field is missing or out of bounds; the message names it.
    InvalidArgument,
    /// 401: a change needs the farm's token (the gateway listens beyond loopback), and the
    /// request carries none or a wrong one: send `Authorization: Bearer <token>`.
    Unauthenticated,
    /// 403: the request names a host that is not the farm's (`Host`), or comes from a web
    /// page of another origin.
    Forbidden,
    /// 404: no such server, load test, scenario run or route.
    NotFound,
    /// 405: the route exists, the method does not (see the `Allow` header).
    MethodNotAllowed,
    /// 409: the farm is not in a state that allows it (e.g. scaling a farm without a runtime).
    Conflict,
    /// 413: the body is larger than the gateway reads (256 KiB).
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: the JSON is well formed but a field has the wrong type or an unknown name.
    UnprocessableEntity,
    /// 429: the controller is out of some resource; try again later.
    TooManyRequests,
    /// 500: a bug in the gateway.
    Internal,
    /// 502: the controller failed in an unexpected way.
    BadGateway,
    /// 503: the controller cannot be reached (down or restarting); try again shortly.
    Unavailable,
    /// 504: the controller did not answer within the request's deadline.
    Timeout,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    /// The HTTP status, repeated for clients that only see the body.
    pub status: u16,
    /// A stable name for the kind of error.
    pub code: ErrorCode,
    /// What happened, for people; names the field at fault when there is one.
    pub message: String,
}

/// An error a REST request ends with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// The request needs the farm's token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is not allowed from where it comes.
    #[error("{0}")]
    Forbidden(String),
    /// A field is missing or out of bounds.
    #[error("{0}")]
    InvalidArgument(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
    /// Wrong method for an existing route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The farm's state forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The body is too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed JSON of the wrong shape.
    #[error("{0}")]
    Unprocessable(String),
    /// The controller is out of a resource.
    #[error("{0}")]
    TooManyRequests(String),
    /// A gateway bug; the details went to the log.
    #[error("internal error in the gateway")]
    Internal,
    /// The controller failed unexpectedly; the details went to the log.
    #[error("{0}")]
    BadGateway(String),
    /// The controller cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// No answer within the deadline.
    #[error("{0}")]
    Timeout(String),
}

impl ApiError {
    /// Maps a status from the controller (or from the channel to it) onto an HTTP error.
    /// This is the only place that knows how gRPC codes and HTTP statuses correspond.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        // Statuses sent by the controller arrive over the wire and carry no source; one
        // with a local source was made by the channel itself: a refused or broken
        // connection. Its text names addresses and OS errors, so it stays in the log.
        let from_transport = status.source().is_some();
        if from_transport
            && matches!(
                status.code(),
                Code::Unavailable | Code::Unknown | Code::Internal | Code::Cancelled
            )
        {
            tracing::debug!(%status, "Controller unreachable.");
            return Self::Unavailable(
                "the controller is unavailable (down or restarting); try again shortly".into(),
            );
        }
        let message = status.message().to_string();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument(message),
            Code::NotFound => Self::NotFound(message),
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
                Self::Conflict(message)
            }
            Code::ResourceExhausted => Self::TooManyRequests(message),
            Code::Unauthenticated => Self::Unauthenticated(message),
            Code::PermissionDenied => Self::Forbidden(message),
            Code::Unavailable => Self::Unavailable(if message.is_empty() {
                "the controller is unavailable; try again shortly".into()
            } else {
                message
            }),
            Code::DeadlineExceeded => Self::Timeout(if message.is_empty() {
                "the controller ran out of time".into()
            } else {
                message
            }),
            Code::Cancelled => {
                Self::Unavailable("the controller cancelled the call; try again".into())
            }
            Code::Unimplemented => {
                tracing::warn!(%status, "Controller does not implement a call.");
                Self::BadGateway("the controller does not implement this call".into())
            }
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                tracing::warn!(%status, "Controller call failed.");
                Self::BadGateway("the controller failed to answer; see its log".into())
            }
        }
    }

    /// The HTTP status and code of this error.
    pub fn status(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            Self::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::InvalidArgument(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::MethodNotAllowed(_) => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            Self::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::UnprocessableEntity,
            ),
            Self::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
            Self::BadGateway(_) => (StatusCode::BAD_GATEWAY, ErrorCode::BadGateway),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            Self::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, ErrorCode::Timeout),
        }
    }

    /// An error for a bare `status` (one that reached the edge without a JSON body, such
    /// as axum's 405), with `message`.
    pub fn from_http(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthenticated(message),
            StatusCode::FORBIDDEN => Self::Forbidden(message),
            StatusCode::NOT_FOUND => Self::NotFound(message),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed(message),
            StatusCode::CONFLICT => Self::Conflict(message),
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(message),
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests(message),
            StatusCode::BAD_GATEWAY => Self::BadGateway(message),
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(message),
            StatusCode::GATEWAY_TIMEOUT => Self::Timeout(message),
            s if s.is_client_error() => Self::BadRequest(message),
            _ => Self::Internal,
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        let (status, code) = self.status();
        ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code,
                message: self.to_string(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status();
        (status, Json(self.body())).into_response()
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<ApiResponse> {
        let json_schema = ctx.schema.subschema_for::<ErrorBody>();
        Some(ApiResponse {
            description: "An error: every 4xx and 5xx has this shape (see `code`).".into(),
            content: [(
                "application/json".to_string(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema,
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, ApiResponse)> {
        // One `default` response documents every error status at once.
        Self::operation_response(ctx, operation)
            .map(|r| vec![(None, r)])
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        let cases = [
            (Code::InvalidArgument, 400),
            (Code::OutOfRange, 400),
            (Code::NotFound, 404),
            (Code::FailedPrecondition, 409),
            (Code::AlreadyExists, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Cancelled, 503),
            (Code::Unimplemented, 502),
            (Code::Internal, 502),
            (Code::Unknown, 502),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
        ];
        for (code, http) in cases {
            let e = ApiError::from_grpc(&tonic::Status::new(code, "field x is bad"));
            assert_eq!(e.status().0.as_u16(), http, "{code:?}");
        }
        let kept = ApiError::from_grpc(&tonic::Status::not_found("server 9 is not part"));
        assert_eq!(kept.to_string(), "server 9 is not part");
        let hidden = ApiError::from_grpc(&tonic::Status::internal("panic at src/x.rs:3"));
        assert!(!hidden.to_string().contains("src/x.rs"), "{hidden}");
    }

    #[test]
    fn transport_failures_are_503_without_details() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "127.0.0.1:1 refused");
        let status = tonic::Status::from_error(Box::new(io));
        let e = ApiError::from_grpc(&status);
        assert_eq!(e.status().0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.to_string().contains("127.0.0.1"), "{e}");
    }
}
