//! Benchmark baseline: a bare axum router.
use axum::body::{Body, Bytes};
use axum::response::Response;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18003".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        let body = Bytes::from_static(br#"{"status":"healthy","server_id":1}"#);
        let app = axum::Router::new().route(
            "/health",
            axum::routing::get(move || {
                let body = body.clone();
                async move {
                    let mut r = Response::new(Body::from(body));
                    r.headers_mut().insert(
                        axum::http::header::CONTENT_TYPE,
                        axum::http::HeaderValue::from_static("application/json"),
                    );
                    r
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    });
}
