//! The dashboard: the built `web/` app, served at `/` to browsers, on the same port as the
//! REST API and the grpc-web feed it reads.
//!
//! `GET /` answers a browser (an `Accept` that names `text/html`) with the dashboard's
//! `index.html`, and everyone else (curl, programs asking for JSON) with the API info JSON.
//! The app's files are served from their own paths (`/assets/…` with hashed names, cached
//! for a year; everything else revalidated).
//!
//! Where the files come from, first match wins:
//! 1. `FARM_DASHBOARD_DIR`: a folder read on every request (for working on the dashboard
//!    without rebuilding the binary; `npm --prefix web run build` then a page reload).
//! 2. The files of `web/dist` embedded at compile time by `build.rs`, when it existed then:
//!    one static binary carries the dashboard.
//! 3. Nothing: a browser gets a page that says how to build the dashboard.
//!
//! The app routes with the URL's fragment (`/#/servers/3`), so the server never needs to
//! answer unknown paths with `index.html`.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, header};
use tokio_util::either::Either;
use tower::{Layer, Service};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/dashboard.rs"));
}

/// The environment variable naming a folder to serve the dashboard from instead of the
/// embedded copy.
pub const DIR_ENV: &str = "FARM_DASHBOARD_DIR";

/// Where the dashboard's files are read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A folder on disk, read per request (`FARM_DASHBOARD_DIR`).
    Dir(PathBuf),
    /// Files compiled into the binary: (URL path, contents).
    Embedded(&'static [(&'static str, &'static [u8])]),
}

impl Source {
    /// `FARM_DASHBOARD_DIR` when set and not empty, else the copy embedded at build time
    /// (which is empty when `web/dist` did not exist then).
    pub fn from_env() -> Self {
        match std::env::var_os(DIR_ENV) {
            Some(dir) if !dir.is_empty() => Self::Dir(PathBuf::from(dir)),
            _ => Self::Embedded(embedded::EMBEDDED),
        }
    }

    /// The contents of the file at URL `path` (`/index.html`, `/assets/x.js`), if any.
    async fn read(&self, path: &str) -> Option<Bytes> {
        match self {
            Self::Embedded(files) => files
                .iter()
                .find(|(url, _)| *url == path)
                .map(|(_, bytes)| Bytes::from_static(bytes)),
            Self::Dir(root) => {
                let file = root.join(safe_relative(path)?);
                tokio::task::spawn_blocking(move || std::fs::read(file))
                    .await
                    .ok()?
                    .ok()
                    .map(Into::into)
            }
        }
    }
}

/// `path` as a relative file path with only normal components: no `..`, no root, no
/// backslashes, so a request cannot leave the dashboard's folder.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let trimmed = path.strip_prefix('/')?;
    if trimmed.is_empty() || trimmed.contains('\\') || trimmed.contains('\0') {
        return None;
    }
    let relative = Path::new(trimmed);
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| relative.to_path_buf())
}

/// The layer that gives browsers the dashboard at `/` and its files at their paths, from
/// `source`; every other request passes untouched. [`crate::router`] puts it around the
/// routes, after routing.
pub fn layer<S>(source: Source) -> impl Layer<S, Service = Dashboard<S>> + Clone {
    let source = Arc::new(source);
    tower::layer::layer_fn(move |inner| Dashboard {
        inner,
        source: source.clone(),
    })
}

/// The service of [`layer`].
#[derive(Debug, Clone)]
pub struct Dashboard<S> {
    inner: S,
    source: Arc<Source>,
}

/// What the dashboard may answer a request with.
enum Lookup {
    /// The app's page, for a browser at `/`.
    Page,
    /// The file at this path, if the dashboard has one; else the request goes on.
    File(String),
}

impl Lookup {
    fn of(request: &Request) -> Option<Self> {
        let method = request.method();
        if !(method == Method::GET || method == Method::HEAD)
            || crate::grpc_web::is_grpc_web(request.headers())
        {
            return None;
        }
        let path = request.uri().path();
        if path == "/" || path == "/index.html" {
            return wants_html(request.headers()).then_some(Self::Page);
        }
        // The layer runs after routing: a request an API route matched is never a file, and
        // must not pay for a lookup (a disk read with `FARM_DASHBOARD_DIR`).
        if request.extensions().get::<MatchedPath>().is_some() {
            return None;
        }
        Some(Self::File(path.to_owned()))
    }
}

type BoxedCall<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> Service<Request> for Dashboard<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = S::Error;
    /// Left: the inner service's answer; right: the dashboard's own, or the inner one after
    /// a file lookup found nothing.
    type Future = Either<S::Future, BoxedCall<S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let lookup: BoxedCall<S::Error> = match Lookup::of(&request) {
            // API requests, the hot path: straight through, nothing cloned or boxed.
            None => return Either::Left(self.inner.call(request)),
            Some(Lookup::Page) => {
                let source = self.source.clone();
                Box::pin(async move {
                    Ok(match source.read("/index.html").await {
                        Some(page) => file_response("/index.html", page),
                        None => not_built(),
                    })
                })
            }
            Some(Lookup::File(path)) => {
                // When no file answers, the request goes on after the read, to the service
                // that was made ready for it; this one keeps a fresh clone.
                let fresh = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, fresh);
                let source = self.source.clone();
                Box::pin(async move {
                    match source.read(&path).await {
                        Some(bytes) => Ok(file_response(&path, bytes)),
                        None => ready.call(request).await,
                    }
                })
            }
        };
        Either::Right(lookup)
    }
}

/// Whether the client asked for HTML (a browser navigating), as opposed to curl's `*/*` or
/// a program's `application/json`.
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("text/html"))
}

/// What an index page is allowed to load: only this origin, so nothing comes from a CDN.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn file_response(path: &str, bytes: Bytes) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Vite names the files under /assets/ by their content hash: they never change.
    let cache = if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if path.ends_with(".html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The page a browser gets when the binary was built without the dashboard.
fn not_built() -> Response {
    const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>farm: the dashboard is not built</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:44rem;margin:3rem auto;padding:0 1rem;background:#0f1115;color:#e6e8ee}
code,pre{font-family:ui-monospace,monospace;background:#1b1f27;border-radius:6px;padding:.1rem .35rem}pre{padding:.8rem 1rem;overflow:auto}a{color:#7cb4ff}</style>
</head><body>
<h1>The farm is running; its dashboard is not built</h1>
<p>This <code>farm</code> binary was compiled before <code>web/dist</code> existed. Build the dashboard, then rebuild the binary so it embeds it:</p>
<pre>npm --prefix web ci
npm --prefix web run build
cargo build</pre>
<p>Or serve a built dashboard without rebuilding: <code>FARM_DASHBOARD_DIR=web/dist farm up</code>.</p>
<p>Meanwhile the API works: <a href="/docs">/docs</a>, <a href="/api/servers">/api/servers</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>
"#;
    let mut response = Response::new(Body::from(PAGE));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use http::StatusCode;
    use http_body::Body as _;
    use tower::ServiceExt;

    static FILES: &[(&str, &[u8])] = &[
        ("/index.html", b"<!doctype html><title>farm</title>"),
        ("/assets/app-1234.js", b"console.log(1)"),
        ("/favicon.svg", b"<svg/>"),
    ];

    fn app(source: Source) -> Router {
        let inner = Router::new()
            .route(
                "/",
                get(|| async { axum::Json(serde_json::json!({"name": "farm"})) }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "no route") });
        inner.layer(layer(source))
    }

    async fn call(app: &Router, method: Method, path: &str, accept: Option<&str>) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> String {
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Ok(data) = frame.unwrap().into_data() {
                out.extend_from_slice(&data);
            }
        }
        String::from_utf8(out).unwrap()
    }

    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

    #[tokio::test]
    async fn browsers_get_the_page_and_programs_the_json() {
        let app = app(Source::Embedded(FILES));
        let page = call(&app, Method::GET, "/", Some(BROWSER)).await;
        assert_eq!(page.status(), 200);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(body(page).await.contains("<title>farm</title>"));

        for accept in [None, Some("*/*"), Some("application/json")] {
            let info = call(&app, Method::GET, "/", accept).await;
            assert_eq!(
                info.headers()[header::CONTENT_TYPE],
                "application/json",
                "{accept:?}"
            );
        }
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_cache_policy() {
        let app = app(Source::Embedded(FILES));
        let js = call(&app, Method::GET, "/assets/app-1234.js", None).await;
        assert_eq!(js.status(), 200);
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            js.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        assert_eq!(body(js).await, "console.log(1)");

        let icon = call(&app, Method::GET, "/favicon.svg", None).await;
        assert_eq!(icon.headers()[header::CONTENT_TYPE], "image/svg+xml");
        assert_eq!(icon.headers()[header::CACHE_CONTROL], "no-cache");

        let missing = call(&app, Method::GET, "/assets/nope.js", None).await;
        assert_eq!(
            missing.status(),
            404,
            "unknown files fall through to the API's 404"
        );
        let post = call(&app, Method::POST, "/favicon.svg", None).await;
        assert_eq!(post.status(), 404, "only GET and HEAD are served");
    }

    #[tokio::test]
    async fn without_a_build_browsers_learn_how_to_make_one() {
        let app = app(Source::Embedded(&[]));
        let page = call(&app, Method::GET, "/", Some(BROWSER)).await;
        assert_eq!(page.status(), 200);
        assert!(body(page).await.contains("npm --prefix web run build"));
    }

    #[tokio::test]
    async fn a_folder_is_served_without_escaping_it() {
        let root = std::env::temp_dir().join(format!("farm-dashboard-{}", std::process::id()));
        std::fs::create_dir_all(root.join("assets")).unwrap();
        std::fs::write(root.join("index.html"), "<p>from disk</p>").unwrap();
        std::fs::write(root.join("assets/a.css"), "p{}").unwrap();
        let app = app(Source::Dir(root.clone()));
        let page = call(&app, Method::GET, "/", Some(BROWSER)).await;
        assert_eq!(body(page).await, "<p>from disk</p>");
        let css = call(&app, Method::GET, "/assets/a.css", None).await;
        assert_eq!(
            css.headers()[header::CONTENT_TYPE],
            "text/css; charset=utf-8"
        );
        for bad in ["/../Cargo.toml", "/assets/../../etc/passwd", "/%2e%2e/x"] {
            let response = call(&app, Method::GET, bad, None).await;
            assert_eq!(response.status(), 404, "{bad}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(safe_relative("/a/b.js"), Some(PathBuf::from("a/b.js")));
        for bad in ["/", "", "a", "/../x", "/a/../../x", "/a\\b", "//etc/passwd"] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
    }
}
