//! The load generator's HTTP/1.1 client: one keep-alive connection, one request at a time,
//! the request written from bytes encoded once per run, the answer parsed in a buffer the
//! connection keeps, and the body counted and dropped.
//!
//! It is this small on purpose, the way wrk's is: a load generator that spends more per
//! request than the server it measures reports its own limits. hyper's client costs several
//! times as much per request (a dispatch channel, a header map each way, body frames), which
//! would hold the engine well under wrk on the same core. The gateway's benchmark
//! (`controller/examples/gateway_bench.rs`) loads the gateway with it for the same reason.
//! Everything else in the farm talks to nodes through `farm_node_api::client`.
//!
//! What it understands of an answer: the status line and headers (httparse), a body framed
//! by `Content-Length`, by `Transfer-Encoding: chunked` (extensions and trailers skipped), or
//! by the end of the connection; no body for `HEAD`, 1xx, 204 and 304; interim 1xx answers
//! skipped; `Connection: close` honoured. Heads larger than [`MAX_HEAD`] are an error. The
//! [`SERVER_HEADER`](farm_node_api::SERVER_HEADER) header, when present, names the server
//! that answered (a run through a front attributes answers by it).

use httparse::Status;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub use super::tally::{Answer, Outcome};

/// Largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers accepted.
const MAX_HEADERS: usize = 64;
/// The read buffer's usual size; it grows only for a larger head.
const BUFFER: usize = 16 * 1024;

/// A request, encoded once for every time it is sent.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    bytes: Vec<u8>,
    head: bool,
}

impl EncodedRequest {
    /// `method path` to `host`, with no body. `path` must already be a valid request target
    /// and `host` a valid header value.
    pub fn new(method: &http::Method, path: &str, host: &str) -> Self {
        let mut text =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: farm-load-test\r\n");
        if matches!(*method, http::Method::POST | http::Method::PUT) {
            text.push_str("Content-Length: 0\r\n");
        }
        text.push_str("\r\n");
        Self {
            bytes: text.into_bytes(),
            head: *method == http::Method::HEAD,
        }
    }
}

/// How the body of an answer is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A keep-alive HTTP/1.1 connection and its read buffer.
pub struct Connection<S = TcpStream> {
    stream: S,
    buffer: Vec<u8>,
    /// The unread bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
}

impl Connection {
    /// A connection to `address` (`host:port`), or the kind of failure (`connect`).
    pub async fn open(address: &str) -> Result<Box<Self>, &'static str> {
        let stream = TcpStream::connect(address).await.map_err(|_| "connect")?;
        // Requests are written in one go; Nagle's algorithm would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(Box::new(Self::over(stream)))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn over(stream: S) -> Self {
        Self {
            stream,
            buffer: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// Sends `request` and reads the whole answer. The connection comes back when it can
    /// carry the next request; dropping the future mid-way drops the connection.
    pub async fn exchange(
        mut self: Box<Self>,
        request: &EncodedRequest,
    ) -> (Outcome, Option<Box<Self>>) {
        match self.round_trip(request).await {
            Ok((answer, reusable)) => (Ok(answer), reusable.then_some(self)),
            Err(kind) => (Err(kind), None),
        }
    }

    /// The answer, and whether the connection can carry another request.
    async fn round_trip(
        &mut self,
        request: &EncodedRequest,
    ) -> Result<(Answer, bool), &'static str> {
        if self.start != self.end {
            // Bytes nobody asked for: the connection is out of step.
            return Err("io");
        }
        self.start = 0;
        self.end = 0;
        self.stream
            .write_all(&request.bytes)
            .await
            .map_err(|_| "io")?;
        loop {
            let (answer, framing, close) = self.read_head(request.head).await?;
            let status = answer.status;
            if (100..200).contains(&status) && status != 101 {
                continue; // an interim answer; the real one follows
            }
            let reusable = match framing {
                Framing::None => true,
                Framing::Length(n) => self.skip(n).await.map(|()| true)?,
                Framing::Chunked => self.skip_chunks().await.map(|()| true)?,
                Framing::UntilClose => self.skip_to_end().await.map(|()| false)?,
            };
            return Ok((answer, reusable && !close && self.start == self.end));
        }
    }

    /// Reads more into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, &'static str> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buffer.len() {
            if self.start > 0 {
                self.buffer.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buffer.len() < MAX_HEAD {
                self.buffer.resize((self.buffer.len() * 2).min(MAX_HEAD), 0);
            } else {
                return Err("io");
            }
        }
        let read = self
            .stream
            .read(&mut self.buffer[self.end..])
            .await
            .map_err(|_| "io")?;
        self.end += read;
        Ok(read > 0)
    }

    /// Parses the status line and headers: the answer, the body's framing, and whether the
    /// server will close the connection.
    async fn read_head(
        &mut self,
        head_request: bool,
    ) -> Result<(Answer, Framing, bool), &'static str> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&self.buffer[self.start..self.end]) {
                Ok(Status::Complete(length)) => {
                    let status = response.code.unwrap_or(0);
                    let http10 = response.version == Some(0);
                    let mut framing = Framing::UntilClose;
                    let mut close = http10;
                    let mut server = None;
                    for header in response.headers.iter() {
                        if header.name.eq_ignore_ascii_case("content-length") {
                            let length = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .ok_or("io")?;
                            if !matches!(framing, Framing::Chunked) {
                                framing = Framing::Length(length);
                            }
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            let chunked =
                                header.value.split(|&b| b == b',').next_back().is_some_and(
                                    |last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"),
                                );
                            framing = if chunked {
                                Framing::Chunked
                            } else {
                                Framing::UntilClose
                            };
                        } else if header
                            .name
                            .eq_ignore_ascii_case(farm_node_api::SERVER_HEADER)
                        {
                            server = std::str::from_utf8(header.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u32>().ok())
                                .filter(|&id| id > 0);
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            let value = header.value.trim_ascii();
                            if value.eq_ignore_ascii_case(b"close") {
                                close = true;
                            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                                close = false;
                            }
                        }
                    }
                    if head_request
                        || (100..200).contains(&status)
                        || status == 204
                        || status == 304
                    {
                        framing = Framing::None;
                    }
                    self.start += length;
                    return Ok((Answer { status, server }, framing, close));
                }
                Ok(Status::Partial) => {
                    // `fill` refuses to grow the buffer past MAX_HEAD.
                    if !self.fill().await? {
                        return Err("io");
                    }
                }
                Err(_) => return Err("io"),
            }
        }
    }

    /// Drops the next `n` bytes of the body.
    async fn skip(&mut self, mut n: u64) -> Result<(), &'static str> {
        loop {
            let buffered = (self.end - self.start) as u64;
            if buffered >= n {
                self.start += n as usize;
                return Ok(());
            }
            n -= buffered;
            self.start = self.end;
            if !self.fill().await? {
                return Err("io");
            }
        }
    }

    /// Drops a chunked body, trailers included.
    async fn skip_chunks(&mut self) -> Result<(), &'static str> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buffer[self.start..self.end]) {
                    Ok(Status::Complete((length, size))) => {
                        self.start += length;
                        break size;
                    }
                    Ok(Status::Partial) => {
                        if !self.fill().await? {
                            return Err("io");
                        }
                    }
                    Err(_) => return Err("io"),
                }
            };
            if size == 0 {
                return self.skip_trailers().await;
            }
            self.skip(size).await?;
            self.expect_crlf().await?;
        }
    }

    /// Drops trailer lines up to and including the empty line that ends the body.
    async fn skip_trailers(&mut self) -> Result<(), &'static str> {
        loop {
            let unread = &self.buffer[self.start..self.end];
            match unread.windows(2).position(|w| w == b"\r\n") {
                Some(0) => {
                    self.start += 2;
                    return Ok(());
                }
                Some(line) => self.start += line + 2,
                None => {
                    if !self.fill().await? {
                        return Err("io");
                    }
                }
            }
        }
    }

    async fn expect_crlf(&mut self) -> Result<(), &'static str> {
        while self.end - self.start < 2 {
            if !self.fill().await? {
                return Err("io");
            }
        }
        if &self.buffer[self.start..self.start + 2] != b"\r\n" {
            return Err("io");
        }
        self.start += 2;
        Ok(())
    }

    /// Drops everything up to the end of the stream.
    async fn skip_to_end(&mut self) -> Result<(), &'static str> {
        loop {
            self.start = self.end;
            if !self.fill().await? {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers the request with `answer`, written `piece` bytes at a time, then `then_close`s.
    async fn exchange(
        answer: &'static [u8],
        piece: usize,
        method: http::Method,
        then_close: bool,
    ) -> (Outcome, bool) {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let connection = Box::new(Connection::over(client));
        let request = EncodedRequest::new(&method, "/x?y=1", "127.0.0.1:9");
        let served = tokio::spawn(async move {
            let mut got = vec![0; 1024];
            let n = server.read(&mut got).await.unwrap();
            for chunk in answer.chunks(piece) {
                // The client may give up before the end of a broken answer.
                if server.write_all(chunk).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            if then_close {
                drop(server);
                None
            } else {
                Some((server, String::from_utf8(got[..n].to_vec()).unwrap()))
            }
        });
        let (outcome, kept) = connection.exchange(&request).await;
        let server = served.await.unwrap();
        if let Some((_, request)) = &server {
            assert!(request.starts_with(&format!(
                "{method} /x?y=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
            )));
        }
        (outcome, kept.is_some())
    }

    fn answered(status: u16) -> Outcome {
        Ok(Answer {
            status,
            server: None,
        })
    }

    fn kept_alive(outcome: (Outcome, bool), status: u16) {
        assert_eq!(outcome, (answered(status), true));
    }

    #[tokio::test]
    async fn bodies_framed_every_way_are_read_whole_in_any_pieces() {
        let length: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let chunked: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
        for piece in [1, 3, 7, 1000] {
            kept_alive(exchange(length, piece, http::Method::GET, false).await, 200);
            kept_alive(
                exchange(chunked, piece, http::Method::GET, false).await,
                201,
            );
        }
        let interim: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        kept_alive(exchange(interim, 4, http::Method::POST, false).await, 204);
        let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n";
        kept_alive(exchange(head, 5, http::Method::HEAD, false).await, 200);
    }

    #[tokio::test]
    async fn the_answering_server_is_read_from_its_header() {
        let named: &[u8] = b"HTTP/1.1 200 OK\r\nX-Farm-Server: 7\r\nContent-Length: 0\r\n\r\n";
        let (outcome, kept) = exchange(named, 5, http::Method::GET, false).await;
        assert!(kept);
        assert_eq!(outcome.unwrap().server, Some(7));
        for junk in [&b"abc"[..], b"0", b"-3", b"99999999999"] {
            let answer: &'static [u8] = [
                &b"HTTP/1.1 200 OK\r\nx-farm-server: "[..],
                junk,
                b"\r\nContent-Length: 0\r\n\r\n",
            ]
            .concat()
            .leak();
            let (outcome, _) = exchange(answer, 64, http::Method::GET, false).await;
            assert_eq!(outcome.unwrap().server, None);
        }
    }

    #[tokio::test]
    async fn a_closing_or_unframed_answer_gives_the_connection_up() {
        let close: &[u8] = b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(
            exchange(close, 4, http::Method::GET, true).await,
            (answered(503), false)
        );
        let until_end: &[u8] = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        assert_eq!(
            exchange(until_end, 4, http::Method::GET, true).await,
            (answered(200), false)
        );
        let http10: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            exchange(http10, 4, http::Method::GET, false).await,
            (answered(200), false)
        );
    }

    #[tokio::test]
    async fn broken_answers_are_io_errors() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"not http at all\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
            b"",
        ] {
            assert_eq!(
                exchange(answer, 3, http::Method::GET, true).await,
                (Err("io"), false)
            );
        }
    }

    #[tokio::test]
    async fn a_head_past_the_bound_is_refused() {
        let huge: &'static [u8] =
            format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD))
                .into_bytes()
                .leak();
        assert_eq!(
            exchange(huge, 4096, http::Method::GET, true).await,
            (Err("io"), false)
        );
    }
}
