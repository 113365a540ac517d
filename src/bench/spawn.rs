//! The daemon a bench measures: this binary as `serve` on a loopback port, with its own data and state
//! folders, a random token and MQTT off, stderr to a log file; killed when dropped.
use super::BenchError;
use crate::util::http_client::Conn;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(super) struct BenchDaemon {
    child: Child,
    pub addr: SocketAddr,
    pub token: String,
    pub log: PathBuf,
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BenchDaemon {
    /// Starts it and waits for the "listening" line. `nofile` runs it under `ulimit -n`; `env` adds settings.
    pub fn start(data: &Path, state: &Path, log: &Path, nofile: Option<u64>, env: &[(&str, &str)]) -> Result<BenchDaemon, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::Daemon(format!("cannot find this binary: {e}")))?;
        let token = format!("bench-{:016x}", crate::util::rng::Rng::new(u64::from(std::process::id()) ^ 0x5eed).next_u64());
        let err = std::fs::File::create(log).map_err(|e| BenchError::Daemon(format!("{}: {e}", log.display())))?;
        let mut cmd = match nofile {
            // `exec` keeps the pid, so RSS is read from the daemon itself.
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("MILLWRIGHT_DATA_DIR", data)
            .env("MILLWRIGHT_STATE_DIR", state)
            .env("MILLWRIGHT_MQTT__ENABLED", "false")
            .env("MILLWRIGHT_AUTH__TOKEN", &token)
            .envs(env.iter().copied())
            .env_remove("MILLWRIGHT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().map_err(|e| BenchError::Daemon(format!("starting the daemon: {e}")))?;
        let stdout = child.stdout.take();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Some(out) = stdout else { return };
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("millwright listening on http://") {
                    let _ = tx.send(rest.trim_end_matches('/').to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).ok().and_then(|a| a.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BenchError::Daemon(format!("the daemon did not start; see {}", log.display())));
        };
        Ok(BenchDaemon { child, addr, token, log: log.to_path_buf() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_mb(&self) -> f64 {
        rss_mb(self.pid())
    }

    pub fn conn(&self) -> Conn {
        Conn::new(self.addr, &self.token)
    }

    /// A GET's JSON answer; `Null` when the daemon did not answer with JSON (the caller's check then fails).
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        self.conn().get(path).ok().and_then(|r| r.json().ok()).unwrap_or(serde_json::Value::Null)
    }

    /// A POST's JSON answer, as [`BenchDaemon::get_json`].
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        self.conn().post(path, body).ok().and_then(|r| r.json().ok()).unwrap_or(serde_json::Value::Null)
    }
}

/// A process's resident set in MB (10^6 bytes) from /proc; NaN when it cannot be read.
pub(super) fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}
