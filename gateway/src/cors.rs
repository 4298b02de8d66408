//! CORS (the gateway's own origin and the dashboard's dev server by default, a configured
//! list besides, or any origin when asked for), plus what grpc-web in a browser needs,
//! applied to the requests it concerns.
//!
//! The headers come from tower-http's [`CorsLayer`], configured by [`layer`]. It runs only
//! for requests that carry an `Origin` header, which browsers send with every cross-origin
//! request and every preflight. Everything else (curl, pollers, Prometheus) skips it:
//! tower-http builds a header map for every request it sees and adds three headers to every
//! answer, which shows in the gateway's throughput under a busy poller of
//! `GET /api/servers`. Those answers carry `Vary: origin` instead, so that a cache never
//! hands a browser an answer that was made without its origin.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use http::Method;
use http::Response;
use http::header::{self, HeaderName, HeaderValue};
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer, ResponseFuture};

use crate::config::CorsOrigins;

/// CORS for `origins`: its request headers allowed for grpc-web, the gRPC status headers
/// exposed so JavaScript can read a trailers-only error, and `ETag` exposed and
/// `If-None-Match` allowed for conditional reads.
pub fn layer<S>(origins: &CorsOrigins) -> impl Layer<S, Service = BrowserCors<S>> + Clone + use<S> {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
            header::IF_NONE_MATCH,
            HeaderName::from_static("x-grpc-web"),
            HeaderName::from_static("x-user-agent"),
            HeaderName::from_static("grpc-timeout"),
            HeaderName::from_static("connect-protocol-version"),
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("grpc-status"),
            HeaderName::from_static("grpc-message"),
            HeaderName::from_static("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(3600));
    let layer = match origins {
        CorsOrigins::Any => layer.allow_origin(AllowOrigin::any()),
        CorsOrigins::Farm(_) => {
            let origins = origins.clone();
            layer.allow_origin(AllowOrigin::predicate(move |origin, parts| {
                origins.allows(origin, parts.headers.get(header::HOST))
            }))
        }
    };
    tower::layer::layer_fn(move |inner| BrowserCors {
        cors: layer.layer(inner),
    })
}

/// The service of [`layer`]: tower-http's [`Cors`] around the inner service, which
/// requests without an `Origin` reach directly. Both paths share the one inner service and
/// its readiness, so a request costs no clone of the stack below.
#[derive(Debug, Clone)]
pub struct BrowserCors<S> {
    cors: Cors<S>,
}

impl<S, B> Service<Request> for BrowserCors<S>
where
    S: Service<Request, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BrowserCorsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let path = if request.headers().contains_key(header::ORIGIN) {
            Path::Cors {
                call: self.cors.call(request),
            }
        } else {
            Path::Plain {
                call: self.cors.get_mut().call(request),
            }
        };
        BrowserCorsFuture { path }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`BrowserCors`], from the path the request took.
    pub struct BrowserCorsFuture<F> {
        #[pin]
        path: Path<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = PathProjection]
    enum Path<F> {
        Cors { #[pin] call: ResponseFuture<F> },
        Plain { #[pin] call: F },
    }
}

impl<F, B, E> Future for BrowserCorsFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().path.project() {
            PathProjection::Cors { call } => call.poll(cx),
            PathProjection::Plain { call } => call.poll(cx).map_ok(vary_origin),
        }
    }
}

fn vary_origin<B>(mut response: Response<B>) -> Response<B> {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn answer(origins: &CorsOrigins, request: http::request::Builder) -> Response<Body> {
        let inner = tower::service_fn(|_: Request| async {
            Ok::<_, Infallible>(Response::new(Body::from("{}")))
        });
        layer(origins)
            .layer(inner)
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .map_or("", |v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn browsers_get_cors_headers_and_everyone_else_a_vary() {
        let any = CorsOrigins::Any;
        let browser = answer(
            &any,
            Request::get("/api/servers").header("origin", "http://a.example"),
        )
        .await;
        assert_eq!(header(&browser, "access-control-allow-origin"), "*");
        assert!(header(&browser, "access-control-expose-headers").contains("grpc-status"));

        let curl = answer(&any, Request::get("/api/servers")).await;
        assert_eq!(header(&curl, "access-control-allow-origin"), "");
        assert_eq!(header(&curl, "vary"), "origin");

        let preflight = answer(
            &any,
            Request::options("/farm.v1.FarmService/Watch")
                .header("origin", "http://a.example")
                .header("access-control-request-method", "POST"),
        )
        .await;
        assert_eq!(header(&preflight, "access-control-allow-origin"), "*");
        assert!(header(&preflight, "access-control-allow-methods").contains("POST"));

        let listed = CorsOrigins::Farm(vec![HeaderValue::from_static("http://a.example")]);
        let allowed = answer(
            &listed,
            Request::get("/").header("origin", "http://a.example"),
        )
        .await;
        assert_eq!(
            header(&allowed, "access-control-allow-origin"),
            "http://a.example"
        );
        let refused = answer(
            &listed,
            Request::get("/").header("origin", "http://b.example"),
        )
        .await;
        assert_eq!(header(&refused, "access-control-allow-origin"), "");

        // By default: the gateway's own origin and the dev server, nobody else.
        let farm = CorsOrigins::default();
        let own = answer(
            &farm,
            Request::get("/")
                .header("host", "127.0.0.1:8000")
                .header("origin", "http://127.0.0.1:8000"),
        )
        .await;
        assert_eq!(
            header(&own, "access-control-allow-origin"),
            "http://127.0.0.1:8000"
        );
        let dev = answer(
            &farm,
            Request::get("/").header("origin", "http://localhost:3000"),
        )
        .await;
        assert_eq!(
            header(&dev, "access-control-allow-origin"),
            "http://localhost:3000"
        );
        let stranger = answer(
            &farm,
            Request::get("/")
                .header("host", "127.0.0.1:8000")
                .header("origin", "http://evil.example"),
        )
        .await;
        assert_eq!(header(&stranger, "access-control-allow-origin"), "");
    }
}
