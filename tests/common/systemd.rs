//! The systemd side of the notify protocol: a bound Unix datagram socket standing in for systemd, collecting
//! every message (READY, STATUS, WATCHDOG, STOPPING) with its arrival time. Used by tests/systemd.rs and
//! tests/hardening/watchdog.rs. Keep reading while the daemon runs: a full datagram queue blocks its sends.
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct FakeSystemd {
    pub sock: UnixDatagram,
    pub t0: Instant,
    pub got: Vec<(Duration, String)>,
}

impl FakeSystemd {
    pub fn bind(path: &Path) -> FakeSystemd {
        let sock = UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        FakeSystemd { sock, t0: Instant::now(), got: Vec::new() }
    }

    /// Reads messages until one satisfies `want` or `limit` passes; returns that message.
    pub fn wait_for(&mut self, limit: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < end {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.got.push((self.t0.elapsed(), msg.clone()));
                if want(&msg) {
                    return Some(msg);
                }
            }
        }
        None
    }

    pub fn drain(&mut self, for_: Duration) {
        self.wait_for(for_, |_| false);
    }

    pub fn pings(&self) -> Vec<Duration> {
        self.got.iter().filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1")).map(|(t, _)| *t).collect()
    }

    pub fn statuses(&self) -> Vec<String> {
        self.got
            .iter()
            .flat_map(|(_, m)| m.lines().filter_map(|l| l.strip_prefix("STATUS=")).map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// When READY=1 arrived.
    pub fn ready_at(&self) -> Option<Duration> {
        self.got.iter().find(|(_, m)| m.lines().any(|l| l == "READY=1")).map(|(t, _)| *t)
    }
}
