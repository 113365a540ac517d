//! A minimal blocking HTTP/1.1 client for the daemon benchmark: keep-alive, Content-Length or chunked bodies,
//! and a server-sent-event reader. Loopback only; nothing here is used by the daemon itself.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One keep-alive connection; reconnects when the server closed it.
pub struct Conn {
    addr: SocketAddr,
    token: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    pub fn new(addr: SocketAddr, token: &str) -> Conn {
        Conn { addr, token: token.to_string(), stream: None }
    }

    pub fn get(&mut self, path: &str) -> std::io::Result<Response> {
        self.send("GET", path, None)
    }

    pub fn post(&mut self, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        self.send("POST", path, Some(body.to_string().as_bytes()))
    }

    pub fn send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<Response> {
        // A kept-alive connection the server has since closed fails on first use; one fresh retry covers it.
        match self.try_send(method, path, body) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_send(method, path, body)
            }
        }
    }

    fn try_send(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> std::io::Result<Response> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            self.stream = Some(BufReader::new(s));
        }
        let Some(reader) = self.stream.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n", self.addr, self.token);
        if let Some(b) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        reader.get_mut().write_all(&out)?;
        let resp = read_response(reader);
        if resp.is_err() {
            self.stream = None;
        }
        resp
    }
}

fn read_response(r: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status line"))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Response { status, body })
}

/// Reads a task's server-sent events until the stream ends or `limit` passes; returns when each `data:` line
/// arrived and its JSON. `connected` is called once the response headers are in.
pub fn sse(addr: SocketAddr, path: &str, limit: Duration, connected: impl FnOnce()) -> std::io::Result<Vec<(Instant, serde_json::Value)>> {
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
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if connected.is_some()
            && buf.windows(4).any(|w| w == b"\r\n\r\n")
            && let Some(f) = connected.take()
        {
            f();
        }
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
