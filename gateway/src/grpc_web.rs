//! grpc-web for `farm.v1.FarmService`, on the REST port: what Envoy's grpc_web filter does,
//! done by tonic-web in front of the same channel the REST routes use.
//!
//! A browser POSTs `/farm.v1.FarmService/<Method>` with `content-type:
//! application/grpc-web[+proto]` (or `-text`); [`tonic_web::GrpcWebLayer`] turns the call
//! into plain gRPC over the controller channel and the answer back into grpc-web, trailers
//! as the last frame. Server-streaming calls (`Watch`, `RunLoadTest`) are relayed frame by
//! frame as they arrive, over HTTP/1.1 chunked encoding: nothing is buffered to the end.
//!
//! Failures stay in the protocol, so a grpc-web client always sees a status it can act on:
//! a controller that cannot be reached is a trailers-only `UNAVAILABLE` (HTTP 200 with
//! `grpc-status: 14`), and a stream that breaks midway (the controller stopped) ends with
//! an `UNAVAILABLE` trailer frame instead of a cut connection. Only the public farm service
//! is exposed: the agents' `AgentService` is not a browser's business.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::header;
use http::{HeaderMap, HeaderValue, Method};
use http_body::Frame;
use tonic::Code;
use tonic_web::GrpcWebLayer;
use tower::{Layer, ServiceExt};

use crate::AppState;

/// The path prefix of the one service exposed over grpc-web.
pub const FARM_SERVICE_PREFIX: &str = "/farm.v1.FarmService/";

/// Whether a request is grpc-web (any of its four content types).
pub fn is_grpc_web(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web"))
}

fn is_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc-web-text"))
}

/// Relays one grpc-web call to the controller.
pub async fn proxy(state: &AppState, request: Request) -> Response {
    let text = is_text(request.headers());
    if !request.uri().path().starts_with(FARM_SERVICE_PREFIX) {
        return trailers_only(
            Code::Unimplemented,
            "only farm.v1.FarmService is served over grpc-web",
            text,
        );
    }
    if request.method() != Method::POST {
        return trailers_only(Code::InvalidArgument, "grpc-web calls are POSTs", text);
    }
    let mut request = request;
    if let Some(authorization) = state.controller().authorization() {
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, authorization.clone());
    }
    // The controller's span joins the gateway's (which joined the browser's, if any).
    farm_telemetry::inject(request.headers_mut());
    let service = GrpcWebLayer::new().layer(state.channel());
    match service.oneshot(request).await {
        Ok(response) => response.map(|body| Body::new(EndWithStatus::new(body, text))),
        Err(error) => {
            tracing::debug!(%error, "grpc-web call could not reach the controller.");
            trailers_only(
                Code::Unavailable,
                "the controller is unavailable (down or restarting); try again shortly",
                text,
            )
        }
    }
}

/// A grpc-web answer with no messages: the status in the headers, HTTP 200.
fn trailers_only(code: Code, message: &str, text: bool) -> Response {
    let content_type = if text {
        "application/grpc-web-text+proto"
    } else {
        "application/grpc-web+proto"
    };
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(value) = HeaderValue::from_str(&percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// grpc-message is percent-encoded (the gRPC spec); ours are ASCII, so only `%` and
/// controls need it.
fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A grpc-web trailer frame (flag 0x80, big-endian length, `name: value` lines), base64
/// for the text encoding.
fn trailer_frame(code: Code, message: &str, text: bool) -> axum::body::Bytes {
    let trailers = format!(
        "grpc-status:{}\r\ngrpc-message:{}\r\n",
        code as i32,
        percent_encode(message)
    );
    let mut frame = Vec::with_capacity(5 + trailers.len());
    frame.push(0x80);
    frame.extend_from_slice(&u32::try_from(trailers.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(trailers.as_bytes());
    if text {
        base64(&frame).into()
    } else {
        frame.into()
    }
}

fn base64(input: &[u8]) -> Vec<u8> {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// A response body that, when the controller's stream breaks, ends with an `UNAVAILABLE`
/// trailer frame instead of an error that would cut the HTTP connection.
struct EndWithStatus {
    inner: tonic::body::Body,
    text: bool,
    done: bool,
}

impl EndWithStatus {
    fn new(inner: tonic::body::Body, text: bool) -> Self {
        Self {
            inner,
            text,
            done: false,
        }
    }
}

impl http_body::Body for EndWithStatus {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(status))) => {
                tracing::debug!(%status, "grpc-web stream from the controller broke.");
                self.done = true;
                let frame = trailer_frame(
                    Code::Unavailable,
                    "the stream from the controller broke (is it restarting?)",
                    self.text,
                );
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), b"");
        assert_eq!(base64(b"f"), b"Zg==");
        assert_eq!(base64(b"fo"), b"Zm8=");
        assert_eq!(base64(b"foo"), b"Zm9v");
        assert_eq!(base64(b"foobar"), b"Zm9vYmFy");
    }

    #[test]
    fn trailer_frames_are_well_formed() {
        let frame = trailer_frame(Code::Unavailable, "gone 100%", false);
        assert_eq!(frame[0], 0x80);
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len, frame.len() - 5);
        let text = std::str::from_utf8(&frame[5..]).unwrap();
        assert_eq!(text, "grpc-status:14\r\ngrpc-message:gone 100%25\r\n");
    }
}
