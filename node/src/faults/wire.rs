//! What two faults do below HTTP: a body that drips out at a set rate (throughput), and a
//! socket that resets instead of closing (connection reset).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// How often a throttled body releases a chunk, at rates of 20 bytes a second and more.
const DRIP_PERIOD_NS: u64 = 50_000_000;

/// A response body sent at no more than a set number of bytes per second, whatever the route
/// produced: chunks of `rate / 20` bytes (at least 1) every 50 ms (longer for rates below
/// 20 bytes a second, so that one byte at a time still keeps to the rate).
///
/// The first chunk goes at once and each next one a full period after the previous one was
/// handed over, so a client that reads slowly gets no catch-up burst. The declared size is the
/// inner body's, so the answer still carries its `Content-Length`.
pub(crate) struct Throttled<B> {
    inner: B,
    /// Taken from `inner`, not yet released.
    pending: Bytes,
    chunk: usize,
    period: Duration,
    next: Pin<Box<Sleep>>,
}

impl<B> Throttled<B> {
    pub(crate) fn new(inner: B, bytes_per_second: u32) -> Self {
        let rate = u64::from(bytes_per_second.max(1));
        let chunk = (rate * DRIP_PERIOD_NS / 1_000_000_000).max(1);
        Self {
            inner,
            pending: Bytes::new(),
            chunk: usize::try_from(chunk).unwrap_or(usize::MAX),
            period: Duration::from_nanos(chunk * 1_000_000_000 / rate),
            next: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Throttled<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                ready!(this.next.as_mut().poll(cx));
                let take = this.chunk.min(this.pending.len());
                let chunk = this.pending.split_to(take);
                let next = tokio::time::Instant::now() + this.period;
                this.next.as_mut().reset(next);
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    // Trailers: nothing to pace.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                end => return Poll::Ready(end),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(pending));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

/// Shared between a connection's service and its socket: set, the socket resets the
/// connection when it is dropped instead of closing it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    pub(crate) fn arm(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn armed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// An accepted connection's socket, as hyper reads and writes it.
///
/// hyper owns the socket until the connection ends, and the service that decides on a reset
/// cannot reach it; the switch lets the service ask for one. When the service then fails,
/// hyper ends the connection without an answer and drops the socket: with `SO_LINGER` set to
/// zero first, closing it sends an RST rather than a FIN (zero linger never blocks the
/// thread, unlike a positive one).
pub(crate) struct Socket {
    stream: TcpStream,
    reset: ResetSwitch,
}

impl Socket {
    pub(crate) fn new(stream: TcpStream, reset: ResetSwitch) -> Self {
        Self { stream, reset }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.reset.armed() {
            // Should it fail, the connection closes normally: still no answer.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.armed() {
            // A FIN first would let the client read an orderly end before the reset.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// The sizes of the chunks `body` releases, and how long it took.
    async fn drain(mut body: Throttled<axum::body::Body>) -> (Vec<usize>, Duration) {
        let start = Instant::now();
        let mut chunks = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            chunks.push(frame.unwrap().into_data().unwrap().len());
        }
        (chunks, start.elapsed())
    }

    #[tokio::test]
    async fn a_throttled_body_keeps_to_its_rate() {
        let body = axum::body::Body::from(vec![7u8; 1000]);
        let throttled = Throttled::new(body, 4000);
        assert_eq!(throttled.size_hint().exact(), Some(1000));
        let (chunks, took) = drain(throttled).await;
        // Five chunks of 200 bytes, 50 ms apart.
        assert_eq!(chunks, [200; 5]);
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn a_slow_rate_sends_a_byte_at_a_time() {
        let body = axum::body::Body::from("abc");
        let (chunks, took) = drain(Throttled::new(body, 10)).await;
        assert_eq!(chunks, [1, 1, 1]);
        // 10 bytes a second: a byte every 100 ms, not one every 50 ms.
        assert!(took >= Duration::from_millis(200), "{took:?}");
    }
}
