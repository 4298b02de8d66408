//! Who may reach the farm through the gateway, checked before anything else runs:
//!
//! - The `Host` header must name the farm: an IP address, `localhost`, or a name given with
//!   `--allowed-hosts`. A web page that rebinds its own DNS name to this machine's address
//!   sends its own name and is refused (403), so it can neither read nor change the farm.
//! - A change (any `POST`, `PUT`, `PATCH` or `DELETE` but the reads of [`READING_POSTS`], and
//!   the grpc-web calls of [`farm_proto::auth::CHANGING_CALLS`]) sent by a web page must come
//!   from an origin the gateway allows (its own, the dev server, or `--cors-origins`):
//!   browsers send `Origin` with every such request, also the "simple" ones CORS never asks
//!   about (403).
//! - Where the gateway listens beyond loopback, a change must carry the farm's token as a
//!   bearer token (401). Reads stay open to whoever reaches the gateway.
//!
//! Preflights (`OPTIONS`) pass through to CORS. A refusal is the gateway's usual JSON error.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{Method, header};
use tokio_util::either::Either;
use tower::{Layer, Service};

use crate::AppState;
use crate::error::ApiError;

/// Puts [`Guard`] around a service, with `state`'s settings.
pub(crate) fn layer<S>(state: AppState) -> impl Layer<S, Service = Guard<S>> + Clone {
    tower::layer::layer_fn(move |inner| Guard {
        inner,
        state: state.clone(),
    })
}

/// The service of [`layer`].
#[derive(Debug, Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match admit(&self.state, &request) {
            Ok(()) => Either::Right(self.inner.call(request)),
            Err(refusal) => Either::Left(std::future::ready(Ok(refusal.into_response()))),
        }
    }
}

/// The REST routes that are `POST` only to carry a body too large for a query, and only
/// read: their RPCs are not among [`farm_proto::auth::CHANGING_CALLS`], so they need no
/// more here than over grpc-web.
const READING_POSTS: [&str; 1] = ["/api/scenarios/check"];

/// Whether `request` changes the farm (or loads it): see the module's documentation.
fn changes(request: &Request) -> bool {
    match *request.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => false,
        Method::POST if crate::grpc_web::is_grpc_web(request.headers()) => {
            farm_proto::auth::CHANGING_CALLS.contains(&request.uri().path())
        }
        Method::POST => !READING_POSTS.contains(&request.uri().path()),
        _ => true,
    }
}

fn admit(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let config = state.config();
    let headers = request.headers();
    let host = headers.get(header::HOST);
    if let Some(host) = host {
        let name = host.to_str().unwrap_or_default();
        if !config.allows_host(name) {
            return Err(ApiError::Forbidden(format!(
                "the Host header names {name:?}, which is not this farm; reach the gateway by its address or localhost, or start it with --allowed-hosts naming that host"
            )));
        }
    }
    if !changes(request) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN)
        && !config.cors_origins.allows(origin, host)
    {
        return Err(ApiError::Forbidden(format!(
            "a web page from {} may not change this farm; allow its origin with --cors-origins",
            origin.to_str().unwrap_or("another origin")
        )));
    }
    if config.require_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let admitted = config.token.as_ref().is_some_and(|t| t.admits(given));
        if !admitted {
            return Err(ApiError::Unauthenticated(
                "this gateway listens beyond loopback: a change needs the farm's token, as `Authorization: Bearer <token>`".into(),
            ));
        }
    }
    Ok(())
}
