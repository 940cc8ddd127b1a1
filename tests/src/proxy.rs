//! A TCP proxy on 127.0.0.1 between a client (the agent) and a server
//! (MariaDB or Garage), for fault-injection tests: pass through, drop every
//! connection at once, refuse new connections, add latency, throttle bytes
//! per second and, in HTTP mode, answer the next requests with an error
//! status instead of forwarding them.
//!
//! The proxy runs on its own small runtime on a private thread, so it works
//! from sync and async tests alike, and stops (closing every connection) when
//! dropped. Loopback only: it binds 127.0.0.1 and forwards to one address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::process::HarnessError;

/// The largest request or response head the HTTP mode reads.
const MAX_HEAD: usize = 64 << 10;
/// Bytes read from a socket at once.
const BUF: usize = 32 << 10;

/// How the proxy treats the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes as they come (MySQL protocol, or any TCP).
    Tcp,
    /// HTTP/1.1 requests one by one, so single requests can be failed.
    Http,
}

/// Requests to answer with an error instead of forwarding them.
#[derive(Debug, Clone, Default)]
struct FailRule {
    remaining: u64,
    status: u16,
    /// Only requests whose request line contains this (empty: every request).
    needle: String,
}

#[derive(Debug, Default)]
struct Controls {
    refuse: AtomicBool,
    latency_ms: AtomicU64,
    /// Bytes per second per direction of each connection; 0 is unlimited.
    rate: AtomicU64,
    fail: Mutex<FailRule>,
    failed: AtomicU64,
    accepted: AtomicU64,
    upstream_bytes: AtomicU64,
    client_bytes: AtomicU64,
}

/// A running proxy; see the module docs.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    controls: Arc<Controls>,
    /// Bumped to close every open connection.
    generation: watch::Sender<u64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// A byte-for-byte proxy to `upstream` (e.g. a MariaDB server's port).
    pub fn tcp(upstream: SocketAddr) -> Result<Proxy, HarnessError> {
        Self::start(upstream, Mode::Tcp)
    }

    /// A proxy that reads HTTP/1.1 requests (an S3 endpoint such as Garage),
    /// so [`Proxy::fail_next`] can answer single requests with an error.
    pub fn http(upstream: SocketAddr) -> Result<Proxy, HarnessError> {
        Self::start(upstream, Mode::Http)
    }

    fn start(upstream: SocketAddr, mode: Mode) -> Result<Proxy, HarnessError> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(HarnessError::io("binding the proxy's port"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(HarnessError::io("setting up the proxy's port"))?;
        let addr = std_listener
            .local_addr()
            .map_err(HarnessError::io("reading the proxy's port"))?;
        let controls = Arc::new(Controls::default());
        let (generation, _) = watch::channel(0u64);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("keeper-proxy")
            .enable_all()
            .build()
            .map_err(HarnessError::io("starting the proxy's runtime"))?;
        let task_controls = controls.clone();
        let task_generation = generation.clone();
        let thread = std::thread::Builder::new()
            .name("keeper-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, upstream, mode, task_controls, task_generation) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime cancels every connection task.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(HarnessError::io("starting the proxy's thread"))?;
        Ok(Proxy {
            addr,
            upstream,
            controls,
            generation,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The proxy's address on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`, for an S3 endpoint behind the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Back to plain forwarding: no refusal, latency, throttle or failures.
    pub fn pass_through(&self) {
        self.controls.refuse.store(false, Ordering::SeqCst);
        self.controls.latency_ms.store(0, Ordering::SeqCst);
        self.controls.rate.store(0, Ordering::SeqCst);
        *lock(&self.controls.fail) = FailRule::default();
    }

    /// Closes every open connection now (both sides see the socket close).
    pub fn drop_connections(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// While on, new connections are accepted and closed at once, before a
    /// byte reaches the server.
    pub fn refuse_new(&self, refuse: bool) {
        self.controls.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Delay added before each forwarded chunk, in both directions.
    pub fn set_latency(&self, latency: Duration) {
        let ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.controls.latency_ms.store(ms, Ordering::SeqCst);
    }

    /// Limits each direction of each connection to `bytes_per_second`
    /// (`None`: unlimited).
    pub fn throttle(&self, bytes_per_second: Option<u64>) {
        self.controls
            .rate
            .store(bytes_per_second.unwrap_or(0), Ordering::SeqCst);
    }

    /// HTTP mode: answers the next `count` requests with `status` (500 or 503
    /// get S3's `InternalError` / `SlowDown` bodies) instead of forwarding them.
    pub fn fail_next(&self, count: u64, status: u16) {
        self.fail_matching(count, status, "");
    }

    /// Like [`Proxy::fail_next`], only for requests whose request line
    /// (`PUT /bucket/key?partNumber=2&uploadId=… HTTP/1.1`) contains `needle`.
    pub fn fail_matching(&self, count: u64, status: u16, needle: &str) {
        *lock(&self.controls.fail) = FailRule {
            remaining: count,
            status,
            needle: needle.to_owned(),
        };
    }

    /// Requests answered with an injected error so far.
    pub fn failed_requests(&self) -> u64 {
        self.controls.failed.load(Ordering::SeqCst)
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> u64 {
        self.controls.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn bytes_to_upstream(&self) -> u64 {
        self.controls.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far (a dump's progress
    /// as the server sends it).
    pub fn bytes_to_clients(&self) -> u64 {
        self.controls.client_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        self.drop_connections();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mode: Mode,
    controls: Arc<Controls>,
    generation: watch::Sender<u64>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors or similar: wait instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        controls.accepted.fetch_add(1, Ordering::SeqCst);
        if controls.refuse.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let controls = controls.clone();
        let mut closed = generation.subscribe();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let work = async {
                match mode {
                    Mode::Tcp => relay_tcp(client, upstream, &controls).await,
                    Mode::Http => relay_http(client, upstream, &controls).await,
                }
            };
            tokio::select! {
                _ = work => {}
                _ = closed.changed() => {}
            }
        });
    }
}

/// Writes `data`, honouring the latency and the throttle.
async fn send<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    controls: &Controls,
    to_upstream: bool,
) -> std::io::Result<()> {
    let latency = controls.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let mut rest = data;
    while !rest.is_empty() {
        let rate = controls.rate.load(Ordering::SeqCst);
        // Slices of a tenth of a second's worth when throttled.
        let n = if rate == 0 {
            rest.len()
        } else {
            rest.len()
                .min(usize::try_from(rate / 10).unwrap_or(usize::MAX).max(1))
        };
        w.write_all(&rest[..n]).await?;
        let counter = if to_upstream {
            &controls.upstream_bytes
        } else {
            &controls.client_bytes
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
        rest = &rest[n..];
    }
    Ok(())
}

async fn copy<R, W>(r: &mut R, w: &mut W, controls: &Controls, to_upstream: bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if send(w, &buf[..n], controls, to_upstream).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}

async fn relay_tcp(client: TcpStream, upstream: SocketAddr, controls: &Controls) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Either side closing ends the connection.
    tokio::select! {
        _ = copy(&mut cr, &mut sw, controls, true) => {}
        _ = copy(&mut sr, &mut cw, controls, false) => {}
    }
}

/// A buffered reader that can hand out what it read ahead.
struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// Reads more; false at end of stream.
    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; BUF];
        let n = self.inner.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Bytes up to and including the first `\r\n\r\n` (or `\r\n` when
    /// `line`); None at a clean end of stream.
    async fn until(&mut self, line: bool) -> std::io::Result<Option<Vec<u8>>> {
        let end: &[u8] = if line { b"\r\n" } else { b"\r\n\r\n" };
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                return Ok(Some(self.buf.drain(..i + end.len()).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(std::io::Error::other("HTTP head too large"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(std::io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Moves exactly `n` bytes to `w` (or drops them when `w` is None).
    async fn forward<W: AsyncWrite + Unpin>(
        &mut self,
        mut n: u64,
        mut w: Option<&mut W>,
        controls: &Controls,
        to_upstream: bool,
    ) -> std::io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && !self.fill().await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let take = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            let part: Vec<u8> = self.buf.drain(..take).collect();
            if let Some(w) = w.as_mut() {
                send(&mut **w, &part, controls, to_upstream).await?;
            }
            n -= take as u64;
        }
        Ok(())
    }

    /// Moves a chunked body (chunks and trailers) to `w`.
    async fn forward_chunked<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
        controls: &Controls,
        to_upstream: bool,
    ) -> std::io::Result<()> {
        loop {
            let line = self
                .until(true)
                .await?
                .ok_or(std::io::ErrorKind::UnexpectedEof)?;
            send(w, &line, controls, to_upstream).await?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| std::io::Error::other("bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let line = self
                        .until(true)
                        .await?
                        .ok_or(std::io::ErrorKind::UnexpectedEof)?;
                    send(w, &line, controls, to_upstream).await?;
                    if line == b"\r\n" {
                        return Ok(());
                    }
                }
            }
            self.forward(size + 2, Some(&mut *w), controls, to_upstream)
                .await?;
        }
    }
}

/// What an HTTP head says about the body that follows.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_of(head: &str) -> Option<Body> {
    if header(head, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        return Some(Body::Chunked);
    }
    match header(head, "content-length") {
        Some(v) => v.parse().ok().map(Body::Length),
        None => None,
    }
}

async fn relay_http(client: TcpStream, upstream: SocketAddr, controls: &Controls) {
    let (cr, mut cw) = client.into_split();
    let mut cr = Reader::new(cr);
    // Opened at the first forwarded request, kept for the next ones.
    let mut server: Option<(
        Reader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
    )> = None;
    loop {
        let Ok(Some(head)) = cr.until(false).await else {
            return;
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let request_line = text.lines().next().unwrap_or("").to_owned();
        let method = request_line.split(' ').next().unwrap_or("").to_owned();
        let request_body = body_of(&text).unwrap_or(Body::None);

        let injected = {
            let mut rule = lock(&controls.fail);
            if rule.remaining > 0 && request_line.contains(&rule.needle) {
                rule.remaining -= 1;
                Some(rule.status)
            } else {
                None
            }
        };
        if let Some(status) = injected {
            // Read the body (unless the client waits for 100-continue), so the
            // client sees the answer rather than a reset.
            let expects = header(&text, "expect").is_some_and(|v| v.contains("100"));
            if !expects {
                let drained = match request_body {
                    Body::Length(n) => cr.forward::<TcpStream>(n, None, controls, false).await,
                    Body::Chunked => {
                        let mut sink = tokio::io::sink();
                        cr.forward_chunked(&mut sink, controls, false).await
                    }
                    Body::None | Body::UntilClose => Ok(()),
                };
                if drained.is_err() {
                    return;
                }
            }
            controls.failed.fetch_add(1, Ordering::SeqCst);
            let _ = cw.write_all(&error_response(status, &method)).await;
            let _ = cw.shutdown().await;
            return;
        }

        if server.is_none() {
            let Ok(stream) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            server = Some((Reader::new(r), w));
        }
        let Some((sr, sw)) = server.as_mut() else {
            return;
        };
        if send(sw, &head, controls, true).await.is_err() {
            return;
        }
        let sent = match request_body {
            Body::Length(n) => cr.forward(n, Some(&mut *sw), controls, true).await,
            Body::Chunked => cr.forward_chunked(sw, controls, true).await,
            Body::None | Body::UntilClose => Ok(()),
        };
        if sent.is_err() {
            return;
        }
        // Responses, including any 100 Continue before the final one.
        loop {
            let Ok(Some(response)) = sr.until(false).await else {
                return;
            };
            let rtext = String::from_utf8_lossy(&response).into_owned();
            let status: u16 = rtext
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if send(&mut cw, &response, controls, false).await.is_err() {
                return;
            }
            if (100..200).contains(&status) {
                continue;
            }
            let body = if method == "HEAD" || status == 204 || status == 304 {
                Body::None
            } else {
                body_of(&rtext).unwrap_or(Body::UntilClose)
            };
            let forwarded = match body {
                Body::None => Ok(()),
                Body::Length(n) => sr.forward(n, Some(&mut cw), controls, false).await,
                Body::Chunked => sr.forward_chunked(&mut cw, controls, false).await,
                Body::UntilClose => {
                    let leftover = std::mem::take(&mut sr.buf);
                    let _ = send(&mut cw, &leftover, controls, false).await;
                    copy(&mut sr.inner, &mut cw, controls, false).await;
                    return;
                }
            };
            if forwarded.is_err() {
                return;
            }
            if header(&rtext, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
                let _ = cw.shutdown().await;
                return;
            }
            break;
        }
    }
}

/// An S3-style error answer that closes the connection.
fn error_response(status: u16, method: &str) -> Vec<u8> {
    let (reason, code) = match status {
        503 => ("Slow Down", "SlowDown"),
        500 => ("Internal Server Error", "InternalError"),
        502 => ("Bad Gateway", "BadGateway"),
        _ => ("Error", "InternalError"),
    };
    let body = if method == "HEAD" {
        String::new()
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>keeper-proxy</RequestId></Error>"
        )
    };
    let length = if method == "HEAD" { 0 } else { body.len() };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_tell_the_body() {
        let head = "PUT /b/k?partNumber=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n";
        assert!(matches!(body_of(head), Some(Body::Length(12))));
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(body_of(head), Some(Body::Chunked)));
        assert!(body_of("HTTP/1.1 200 OK\r\n\r\n").is_none());
        assert_eq!(header(head, "Transfer-Encoding"), Some("chunked"));
        let answer = String::from_utf8(error_response(503, "PUT")).unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 503 Slow Down\r\n"), "{answer}");
        assert!(answer.contains("<Code>SlowDown</Code>"), "{answer}");
    }
}
