//! The one small blocking HTTP/1.1 client: `millwright healthcheck`, `millwright bench` and the integration
//! tests talk to the daemon through it. Loopback use only (no TLS, no redirects, no proxies).
//!
//! - [`request`]: one request on a connection of its own (`Connection: close`). The body goes out on a thread
//!   of its own while the answer is read, so a server that answers early (413) and closes before reading a
//!   large body is still heard; what arrived before a reset still counts.
//! - [`Conn`]: a kept-alive connection with the bearer token, reconnecting when the server closed it.
//! - [`sse`]: a task's server-sent events, each with the moment it arrived.
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An answer as it came: status, headers in order, and the body (de-chunked).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn head(method: &str, path: &str, addr: SocketAddr, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// One request on a fresh connection, `timeout` for connecting and for each read. Errors: the connection
/// failed, or the server closed it without a status line.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut all: Vec<(&str, &str)> = vec![("Connection", "close")];
    all.extend_from_slice(headers);
    s.write_all(&head(method, path, addr, &all, body))?;
    let raw = std::thread::scope(|scope| {
        if let Some(b) = body
            && let Ok(mut w) = s.try_clone()
        {
            // A server that answers before reading all of it closes on us: that is its answer, not an error.
            scope.spawn(move || {
                let _ = w.write_all(b);
            });
        }
        let mut raw = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match (&s).read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
                // A reset after the answer arrived (our body unread), or a timeout: keep what came.
                Err(_) => break,
            }
        }
        // Lets a writer still blocked on a full socket buffer fail and end, so the scope can close.
        let _ = s.shutdown(std::net::Shutdown::Both);
        raw
    });
    if raw.is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection without an answer"));
    }
    read_response(&mut &raw[..], true)
}

/// Reads one answer. `to_close`: the server closes after it (our `Connection: close`), so a body without a
/// length runs to the end and a body cut short is kept as far as it came.
fn read_response(r: &mut impl BufRead, to_close: bool) -> io::Result<Response> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| invalid("no status line"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            if to_close {
                break;
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut resp = Response { status, headers, body: Vec::new() };
    let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = resp.header("content-length").and_then(|v| v.parse::<u64>().ok());
    resp.body = if chunked {
        read_chunked(r, to_close)?
    } else if let Some(n) = length {
        let mut body = Vec::new();
        r.take(n).read_to_end(&mut body)?;
        if body.len() as u64 != n && !to_close {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body
    } else if to_close {
        let mut body = Vec::new();
        r.read_to_end(&mut body)?;
        body
    } else {
        Vec::new()
    };
    Ok(resp)
}

fn read_chunked(r: &mut impl BufRead, to_close: bool) -> io::Result<Vec<u8>> {
    let cut_short = |body: Vec<u8>| if to_close { Ok(body) } else { Err(io::Error::from(io::ErrorKind::UnexpectedEof)) };
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return cut_short(body);
        }
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, if any, up to the empty line that ends the message.
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let before = body.len();
        r.take(size).read_to_end(&mut body)?;
        if ((body.len() - before) as u64) < size {
            return cut_short(body);
        }
        line.clear();
        r.read_line(&mut line)?;
    }
}

/// One kept-alive connection that sends the bearer token; reconnects when the server closed it.
pub struct Conn {
    addr: SocketAddr,
    token: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr, token: &str) -> Conn {
        Conn { addr, token: token.to_string(), stream: None }
    }

    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.send("GET", path, None)
    }

    pub fn post(&mut self, path: &str, body: &serde_json::Value) -> io::Result<Response> {
        self.send("POST", path, Some(body.to_string().as_bytes()))
    }

    pub fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
        // A kept-alive connection the server has since closed fails on first use; one fresh retry covers it.
        match self.try_send(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_send(method, path, body)
            }
        }
    }

    fn try_send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::new(s));
        }
        let Some(reader) = self.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let mut out = head(method, path, self.addr, &headers, body);
        out.extend_from_slice(body.unwrap_or_default());
        reader.get_mut().write_all(&out)?;
        let resp = read_response(reader, false);
        if resp.is_err() {
            self.stream = None;
        }
        resp
    }
}

/// Reads a task's server-sent events until the stream ends or `limit` passes (an error if it breaks); returns when each
/// `data:` line arrived and its JSON. `connected` is called once the response headers are in.
pub fn sse(addr: SocketAddr, path: &str, limit: Duration, connected: impl FnOnce()) -> io::Result<Vec<(Instant, serde_json::Value)>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n")?;
    let t0 = Instant::now();
    let (mut buf, mut events, mut chunk) = (Vec::new(), Vec::new(), [0u8; 8192]);
    let mut connected = Some(connected);
    while t0.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // A read on a socket with a receive timeout is never restarted after a signal (signal(7)), so
            // EINTR is only a retry.
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{e} after {} events", events.len()))),
        }
        if connected.is_some()
            && buf.windows(4).any(|w| w == b"\r\n\r\n")
            && let Some(f) = connected.take()
        {
            f();
        }
        // Complete `data:` lines as they arrive (chunk-size lines never start with "data:").
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data:")
                && let Ok(v) = serde_json::from_str(data.trim())
            {
                events.push((Instant::now(), v));
            }
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], to_close: bool) -> io::Result<Response> {
        read_response(&mut &raw[..], to_close)
    }

    #[test]
    fn bodies_by_length_chunks_or_close() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}", false).unwrap();
        assert_eq!((r.status, r.body.as_slice(), r.header("x-a")), (200, &b"{}"[..], Some("b")));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\nNEXT";
        let mut rest = &chunked[..];
        assert_eq!(read_response(&mut rest, false).unwrap().body, b"abcde");
        assert_eq!(rest, b"NEXT", "a kept-alive connection is left at the next answer");
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\nto the end", true).unwrap().body, b"to the end");
        assert!(parse(b"HTTP/1.1 200 OK\r\n\r\nto the end", false).unwrap().body.is_empty());
    }

    #[test]
    fn an_answer_cut_short_is_kept_only_when_the_server_closes() {
        let cut = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 10\r\n\r\n{\"er";
        assert_eq!(parse(cut, true).unwrap().body, b"{\"er");
        assert!(parse(cut, false).is_err());
        assert!(parse(b"garbage\r\n\r\n", true).is_err());
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2", true).unwrap().status, 200);
    }
}
