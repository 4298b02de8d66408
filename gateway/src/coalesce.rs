//! Single-flight reads: identical read requests that arrive while one is being answered share
//! that answer, JSON already encoded, instead of each calling the controller and encoding the
//! same farm again.
//!
//! Under load many clients poll `GET /api/servers` at once; without this, each one costs a
//! `ListServers` call, the decoding of fifty servers and ~35 KB of JSON. With it, a burst
//! costs one of each. An answer is never older than the call it shares: a request that
//! arrives after a call has finished starts a new one. Nothing is kept between calls, so the
//! gateway still holds no farm state.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as OpenApiResponse};
use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::header;
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::error::ApiError;

type Slot = Arc<OnceCell<Result<Bytes, ApiError>>>;

/// The reads in flight, by key (route and query).
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<String, Slot>>,
}

impl Coalescer {
    /// The JSON of `read()`, shared with every identical request (same `key`) that arrives
    /// while it runs. `read` is called only when no such request is in flight.
    ///
    /// The read is made and boxed only by the request that runs it: a controller call's
    /// future is kilobytes, and every request that only waits would otherwise carry (and
    /// move, layer by layer) one of its own.
    pub(crate) async fn json<T, F, R>(&self, key: &str, read: R) -> Result<Bytes, ApiError>
    where
        T: Serialize,
        R: FnOnce() -> F,
        F: Future<Output = Result<T, ApiError>>,
    {
        let slot = {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            // Joining a read in flight, the common case under load, allocates nothing.
            match in_flight.get(key) {
                Some(slot) => slot.clone(),
                None => in_flight.entry(key.to_owned()).or_default().clone(),
            }
        };
        slot.get_or_init(|| async {
            let answer = Box::pin(read()).await.and_then(|value| {
                serde_json::to_vec(&value)
                    .map(Bytes::from)
                    .map_err(|_| ApiError::Internal)
            });
            // Whoever ran the read (the first request, or the next one if the first gave up)
            // retires the slot, so that later requests read afresh.
            let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if in_flight.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                in_flight.remove(key);
            }
            answer
        })
        .await
        .clone()
    }
}

/// A JSON answer encoded once and shared; documented in the OpenAPI as `T`.
#[derive(Debug, Clone)]
pub(crate) struct SharedJson<T>(pub(crate) Bytes, pub(crate) PhantomData<T>);

impl<T> IntoResponse for SharedJson<T> {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl<T: schemars::JsonSchema> OperationOutput for SharedJson<T> {
    type Inner = T;

    fn operation_response(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Option<OpenApiResponse> {
        axum::Json::<T>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<u16>, OpenApiResponse)> {
        axum::Json::<T>::inferred_responses(ctx, operation)
    }
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
            move || async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
                Ok::<_, ApiError>(vec![1, 2, 3])
            }
        };
        let waiting = futures_join(
            coalescer.json("servers", read()),
            coalescer.json("servers", read()),
            async {
                tokio::task::yield_now().await;
                release.send(true).unwrap();
            },
        )
        .await;
        assert_eq!(waiting.0.unwrap(), Bytes::from_static(b"[1,2,3]"));
        assert_eq!(waiting.1.unwrap(), Bytes::from_static(b"[1,2,3]"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one call for both");
        coalescer.json("servers", read()).await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "a later request reads afresh"
        );
    }

    async fn futures_join<A: Future, B: Future, C: Future>(
        a: A,
        b: B,
        c: C,
    ) -> (A::Output, B::Output, C::Output) {
        tokio::join!(a, b, c)
    }
}
