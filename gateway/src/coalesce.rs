//! Single-flight reads that are sent again while the farm has not changed: identical read
//! requests that arrive while one is being answered share that answer, JSON already encoded,
//! and the answer is encoded afresh only when the controller says the farm changed since.
//!
//! Under load many clients poll `GET /api/servers` at once; without this, each one costs a
//! `ListServers` call, the decoding of fifty servers and ~35 KB of JSON. With it, a burst
//! costs one call, and a call costs the servers only when the farm changed since the last
//! one: the read carries the version of the answer kept from the last call, and the
//! controller answers "unchanged" while the farm is still at that version. An answer is
//! never older than the call it shares: a request that arrives after a call has finished
//! starts a new one. What the gateway keeps is only the last answer, sent again on the
//! controller's word that it is current, so it still holds no farm state of its own.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{
    Header as OpenApiHeader, HeaderStyle, Operation, ReferenceOr, Response as OpenApiResponse,
};
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::ApiError;
use crate::extract::IfNoneMatch;

type Slot = Arc<OnceCell<Result<Answer, ApiError>>>;

/// What a read found, asked with the version of the answer the gateway keeps.
pub(crate) enum Versioned<T> {
    /// The farm is still at the version asked with: the kept answer is current.
    Unchanged,
    /// The farm at `version`.
    Changed {
        /// The farm's version that `value` shows.
        version: u64,
        /// What the read returned.
        value: T,
    },
}

/// A read's answer: its JSON and the farm version it shows.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// The farm's version that `json` shows; 0 when the controller gave none (one older than
    /// this gateway), and then the answer is not tagged, and nothing is kept for its key.
    pub(crate) version: u64,
    /// The version as an HTTP entity tag, `"<version>"`.
    pub(crate) etag: Option<HeaderValue>,
    /// The answer, encoded.
    pub(crate) json: Bytes,
}

impl Answer {
    fn new(version: u64, json: Vec<u8>) -> Self {
        Self {
            version,
            etag: (version != 0).then(|| {
                HeaderValue::try_from(format!("\"{version}\""))
                    .expect("digits in quotes are a header value")
            }),
            json: json.into(),
        }
    }
}

/// The reads in flight and the last answer, by key (route and query).
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<String, Slot>>,
    /// One entry per key; the keys are a route's few fixed variants (one per status filter).
    last: Mutex<HashMap<String, Answer>>,
}

impl Coalescer {
    /// The answer of `read(known_version)`, shared with every identical request (same `key`)
    /// that arrives while it runs. `read` is called only when no such request is in flight,
    /// with the version of the last answer kept for `key` (0 for none); when it finds the
    /// farm unchanged, that answer is sent again.
    ///
    /// The read is made and boxed only by the request that runs it: a controller call's
    /// future is kilobytes, and every request that only waits would otherwise carry (and
    /// move, layer by layer) one of its own.
    pub(crate) async fn json<T, F, R>(&self, key: &str, read: R) -> Result<Answer, ApiError>
    where
        T: Serialize,
        R: FnOnce(u64) -> F,
        F: Future<Output = Result<Versioned<T>, ApiError>>,
    {
        let slot = {
            let mut in_flight = lock(&self.in_flight);
            // Joining a read in flight, the common case under load, allocates nothing.
            match in_flight.get(key) {
                Some(slot) => slot.clone(),
                None => in_flight.entry(key.to_owned()).or_default().clone(),
            }
        };
        slot.get_or_init(|| async {
            let kept = lock(&self.last).get(key).cloned();
            let known_version = kept.as_ref().map_or(0, |answer| answer.version);
            let answer = match Box::pin(read(known_version)).await {
                // Only a read asked with a kept answer's version can find it unchanged.
                Ok(Versioned::Unchanged) => kept.ok_or(ApiError::Internal),
                Ok(Versioned::Changed { version, value }) => serde_json::to_vec(&value)
                    .map(|json| Answer::new(version, json))
                    .map_err(|_| ApiError::Internal)
                    .inspect(|answer| {
                        let mut last = lock(&self.last);
                        if answer.version == 0 {
                            last.remove(key);
                        } else {
                            last.insert(key.to_owned(), answer.clone());
                        }
                    }),
                Err(e) => Err(e),
            };
            // Whoever ran the read (the first request, or the next one if the first gave up)
            // retires the slot, so that later requests read afresh.
            let mut in_flight = lock(&self.in_flight);
            if in_flight.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                in_flight.remove(key);
            }
            answer
        })
        .await
        .clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves a plain map behind; keep using it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A shared answer as HTTP: its JSON with its version as the `ETag`, or a 304 without a body
/// when the request's `If-None-Match` names that tag. Either way `Cache-Control: no-cache`:
/// a cache may keep it but must ask again before using it. Documented in the OpenAPI as `T`.
#[derive(Debug, Clone)]
pub(crate) struct SharedJson<T> {
    answer: Answer,
    not_modified: bool,
    shape: PhantomData<T>,
}

impl<T> SharedJson<T> {
    /// `answer`, or a 304 when the client holds it already.
    pub(crate) fn new(answer: Answer, if_none_match: &IfNoneMatch) -> Self {
        Self {
            not_modified: answer
                .etag
                .as_ref()
                .is_some_and(|etag| if_none_match.matches(etag)),
            answer,
            shape: PhantomData,
        }
    }
}

impl<T> IntoResponse for SharedJson<T> {
    fn into_response(self) -> Response {
        let mut response = if self.not_modified {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let json = [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )];
            (json, self.answer.json).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if let Some(etag) = self.answer.etag {
            headers.insert(header::ETAG, etag);
        }
        response
    }
}

impl<T: schemars::JsonSchema> OperationOutput for SharedJson<T> {
    type Inner = T;

    fn operation_response(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Option<OpenApiResponse> {
        axum::Json::<T>::operation_response(ctx, operation).map(with_etag)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, OpenApiResponse)> {
        let mut responses: Vec<_> = axum::Json::<T>::inferred_responses(ctx, operation)
            .into_iter()
            .map(|(status, response)| (status, with_etag(response)))
            .collect();
        responses.push((
            Some(StatusCode::NOT_MODIFIED.as_u16()),
            with_etag(OpenApiResponse {
                description: "Not modified: the `If-None-Match` header named this answer's \
                              `ETag`, which is still current. No body."
                    .into(),
                ..Default::default()
            }),
        ));
        responses
    }
}

/// Documents the `ETag` header on `response`.
fn with_etag(mut response: OpenApiResponse) -> OpenApiResponse {
    let etag = OpenApiHeader {
        description: Some(
            "The farm's version this answer shows, quoted. Send it back in `If-None-Match` to \
             get a 304 while nothing has changed. Absent only when the controller is older \
             than the gateway and gives no version."
                .into(),
        ),
        style: HeaderStyle::Simple,
        required: false,
        deprecated: None,
        format: crate::docs::entity_tag_schema(),
        example: None,
        examples: Default::default(),
        extensions: Default::default(),
    };
    response
        .headers
        .insert("ETag".into(), ReferenceOr::Item(etag));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_identical_reads_share_one_call_and_later_ones_read_again() {
        let coalescer = Coalescer::default();
        let calls = AtomicUsize::new(0);
        let (release, released) = tokio::sync::watch::channel(false);
        let read = || {
            let mut released = released.clone();
            let calls = &calls;
            move |_known| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, ApiError>(Versioned::Changed {
                    version: 7,
                    value: vec![1, 2, 3],
                })
            }
        };
        let waiting = tokio::join!(
            coalescer.json("servers", read()),
            coalescer.json("servers", read()),
            async {
                tokio::task::yield_now().await;
                release.send(true).unwrap();
            },
        );
        assert_eq!(waiting.0.unwrap().json, Bytes::from_static(b"[1,2,3]"));
        assert_eq!(waiting.1.unwrap().json, Bytes::from_static(b"[1,2,3]"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for both");
        coalescer.json("servers", read()).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a later request reads afresh"
        );
    }

    #[tokio::test]
    async fn a_read_asks_with_the_kept_version_and_an_unchanged_farm_gets_the_kept_answer() {
        let coalescer = Coalescer::default();
        // The controller's answer: `Some((version, value))`, or `None` for unchanged. The
        // value read carries the version the read was asked with, so the test sees it.
        let read = |controller: Option<(u64, &'static str)>| {
            move |known: u64| async move {
                Ok::<_, ApiError>(match controller {
                    None => Versioned::Unchanged,
                    Some((version, value)) => Versioned::Changed {
                        version,
                        value: (known, value),
                    },
                })
            }
        };
        let steps = [
            // key, the controller's answer, then the version and JSON served
            ("servers", Some((7, "a")), 7, r#"[0,"a"]"#), // asked with none
            ("servers", None, 7, r#"[0,"a"]"#),           // unchanged: the kept answer
            ("servers", Some((9, "b")), 9, r#"[7,"b"]"#), // asked with the kept version
            ("healthy", Some((9, "c")), 9, r#"[0,"c"]"#), // keys are kept apart
        ];
        for (key, controller, version, json) in steps {
            let answer = coalescer.json(key, read(controller)).await.unwrap();
            assert_eq!(
                (answer.version, &answer.json[..]),
                (version, json.as_bytes()),
                "{key} {controller:?}"
            );
        }
    }

    #[tokio::test]
    async fn unchanged_without_a_kept_answer_is_an_error_not_an_empty_answer() {
        let coalescer = Coalescer::default();
        let read = |_known| async { Ok::<Versioned<()>, ApiError>(Versioned::Unchanged) };
        assert!(matches!(
            coalescer.json("servers", read).await,
            Err(ApiError::Internal)
        ));
    }

    #[tokio::test]
    async fn a_failed_read_keeps_the_last_answer_for_the_next_one() {
        let coalescer = Coalescer::default();
        let changed = |_known| async {
            Ok::<_, ApiError>(Versioned::Changed {
                version: 3,
                value: 1,
            })
        };
        coalescer.json("servers", changed).await.unwrap();
        let failing = |_known| async { Err::<Versioned<u8>, _>(ApiError::Internal) };
        assert!(coalescer.json("servers", failing).await.is_err());
        let unchanged = |known| async move {
            assert_eq!(known, 3);
            Ok::<Versioned<u8>, ApiError>(Versioned::Unchanged)
        };
        let answer = coalescer.json("servers", unchanged).await.unwrap();
        assert_eq!(answer.json, Bytes::from_static(b"1"));
    }

    async fn if_none_match(value: &'static str) -> IfNoneMatch {
        use axum::extract::FromRequestParts;
        let request = http::Request::builder().header(header::IF_NONE_MATCH, value);
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let Ok(header) = IfNoneMatch::from_request_parts(&mut parts, &()).await;
        header
    }

    #[tokio::test]
    async fn a_tagged_answer_is_a_304_for_its_tag_and_an_untagged_one_never_is() {
        let coalescer = Coalescer::default();
        let read = |version: u64| {
            move |_known| async move { Ok::<_, ApiError>(Versioned::Changed { version, value: 1 }) }
        };
        let tagged = coalescer.json("servers", read(5)).await.unwrap();
        let response = SharedJson::<u8>::new(tagged.clone(), &if_none_match("\"5\"").await);
        let response = response.into_response();
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], "\"5\"");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
        let response = SharedJson::<u8>::new(tagged, &if_none_match("\"4\"").await);
        assert_eq!(response.into_response().status(), StatusCode::OK);

        // A controller older than the gateway gives no version: nothing is kept or tagged.
        let untagged = coalescer.json("servers", read(0)).await.unwrap();
        assert!(untagged.etag.is_none());
        let response = SharedJson::<u8>::new(untagged, &if_none_match("*").await);
        let response = response.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(header::ETAG));
        let asked_with = |known| async move {
            Ok::<_, ApiError>(Versioned::Changed {
                version: 0,
                value: known,
            })
        };
        let next = coalescer.json("servers", asked_with).await.unwrap();
        assert_eq!(next.json, Bytes::from_static(b"0"), "asked with no version");
    }
}
