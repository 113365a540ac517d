//! Twins: two daemons on one base topic (every stock Pi is called `raspberrypi`, so two of them get the
//! same node id, base topic and client id). Two kinds of evidence, both kept here as pure logic (the
//! caller passes the clock):
//! - **kicked**: the broker closes our connection right after accepting it, again and again, with no
//!   failed attempt in between: what a broker does to the older of two clients with the same client id.
//! - **peers**: live messages on our own `bridge/state`, `bridge/info` or `bridge/health` that carry
//!   another instance id: two daemons with different client ids on one base topic.
//!
//! With peers, only one instance answers requests (the lowest instance id among those that accept them),
//! so a `train` starts one job, not two; the others stay connected and keep publishing.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Quick drops by the broker in a row that make a same-client-id twin the likely cause.
pub const KICKS_FOR_TWIN: u32 = 3;
/// A peer not heard for this long (it publishes health every 30 s) is taken to be gone.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(75);

/// What a live message from another instance says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// `answers_requests` is known from its `bridge/info`; state and health messages leave it as it was.
    Alive { answers_requests: Option<bool> },
    /// Its `offline` state: a clean shutdown or its last will.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    NewPeer(String),
    PeerGone(String),
    /// The kick streak reached [`KICKS_FOR_TWIN`].
    Kicked(u32),
    /// A connection held: whatever kicked us has stopped.
    KicksStopped,
}

#[derive(Debug)]
struct Peer {
    last_seen: Instant,
    answers_requests: bool,
}

/// Names that go into the operator's messages.
#[derive(Debug, Clone)]
pub struct Names {
    pub instance_id: String,
    pub node_id: String,
    pub client_id: String,
    pub base_topic: String,
}

#[derive(Debug)]
pub struct Twins {
    names: Names,
    accepts_requests: bool,
    peers: BTreeMap<String, Peer>,
    kicks: u32,
}

impl Twins {
    pub fn new(names: Names, accepts_requests: bool) -> Twins {
        Twins { names, accepts_requests, peers: BTreeMap::new(), kicks: 0 }
    }

    pub fn me(&self) -> &str {
        &self.names.instance_id
    }

    /// A live message from instance `id` (never ours: the caller filters those).
    pub fn sighting(&mut self, id: &str, seen: Seen, now: Instant) -> Option<Change> {
        match seen {
            Seen::Gone => self.peers.remove(id).map(|_| Change::PeerGone(id.to_string())),
            Seen::Alive { answers_requests } => match self.peers.get_mut(id) {
                Some(p) => {
                    p.last_seen = now;
                    if let Some(a) = answers_requests {
                        p.answers_requests = a;
                    }
                    None
                }
                None => {
                    self.peers.insert(id.to_string(), Peer { last_seen: now, answers_requests: answers_requests.unwrap_or(true) });
                    Some(Change::NewPeer(id.to_string()))
                }
            },
        }
    }

    /// The broker closed a connection that had been up for less than the stable time.
    pub fn kicked(&mut self) -> Option<Change> {
        self.kicks = self.kicks.saturating_add(1);
        (self.kicks == KICKS_FOR_TWIN).then_some(Change::Kicked(self.kicks))
    }

    /// A connection attempt failed (broker down or refusing): a broker that restarts is not a twin.
    pub fn attempt_failed(&mut self) {
        self.kicks = 0;
    }

    /// The connection has held for the stable time.
    pub fn held(&mut self) -> Option<Change> {
        let was = self.kicks >= KICKS_FOR_TWIN;
        self.kicks = 0;
        was.then_some(Change::KicksStopped)
    }

    /// Forgets peers not heard from for [`PEER_TIMEOUT`] (killed while the broker could not tell).
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let old: Vec<String> =
            self.peers.iter().filter(|(_, p)| now.duration_since(p.last_seen) > PEER_TIMEOUT).map(|(id, _)| id.clone()).collect();
        old.into_iter().filter_map(|id| self.peers.remove(&id).map(|_| Change::PeerGone(id))).collect()
    }

    pub fn kicked_out(&self) -> bool {
        self.kicks >= KICKS_FOR_TWIN
    }

    pub fn is_twin(&self) -> bool {
        self.kicked_out() || !self.peers.is_empty()
    }

    pub fn peers(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    /// The instance that answers requests: the lowest id among those that accept them.
    pub fn leader(&self) -> Option<&str> {
        let me = self.accepts_requests.then_some(self.names.instance_id.as_str());
        let others = self.peers.iter().filter(|(_, p)| p.answers_requests).map(|(id, _)| id.as_str());
        me.into_iter().chain(others).min()
    }

    pub fn answers_requests(&self) -> bool {
        self.accepts_requests && self.leader() == Some(self.names.instance_id.as_str())
    }

    /// What the log and `/api/health` say while a twin is suspected.
    pub fn warning(&self) -> Option<String> {
        let n = &self.names;
        if !self.peers.is_empty() {
            let who = match self.leader() {
                Some(l) if l == n.instance_id => "this instance answers requests, the other does not".to_string(),
                Some(l) => format!("instance {l} answers requests, this one does not"),
                None => "no instance accepts requests".to_string(),
            };
            return Some(format!(
                "another millwright (instance {}) publishes on this daemon's base topic {} (this is instance {}): two daemons with the same node id {:?} or base_topic. Give each its own mqtt.node_id (or mqtt.base_topic); until then {who}",
                self.peers().join(", "),
                n.base_topic,
                n.instance_id,
                n.node_id,
            ));
        }
        self.kicked_out().then(|| {
            format!(
                "the broker closed the connection right after accepting it, {} times in a row: most likely another daemon connects with the same client id {:?} (two Pis with the same host name get the same node id {:?}). Give each its own mqtt.node_id (or mqtt.client_id); reconnecting with growing back-off",
                self.kicks, n.client_id, n.node_id,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twins(me: &str) -> Twins {
        Twins::new(
            Names {
                instance_id: me.into(),
                node_id: "raspberrypi".into(),
                client_id: "millwright-raspberrypi".into(),
                base_topic: "millwright/raspberrypi".into(),
            },
            true,
        )
    }

    #[test]
    fn the_lowest_instance_that_accepts_requests_answers_them() {
        let t0 = Instant::now();
        let mut b = twins("bbbb0000");
        assert!(b.answers_requests() && !b.is_twin());
        assert_eq!(b.sighting("aaaa0000", Seen::Alive { answers_requests: None }, t0), Some(Change::NewPeer("aaaa0000".into())));
        assert!(b.is_twin());
        assert!(!b.answers_requests(), "aaaa0000 answers");
        assert!(b.warning().unwrap().contains("instance aaaa0000 answers requests, this one does not"));
        // Its info says it does not accept requests: this one takes them.
        assert_eq!(b.sighting("aaaa0000", Seen::Alive { answers_requests: Some(false) }, t0), None);
        assert!(b.answers_requests());
        let mut a = twins("aaaa0000");
        a.sighting("bbbb0000", Seen::Alive { answers_requests: Some(true) }, t0);
        assert!(a.answers_requests());
        assert!(a.warning().unwrap().contains("mqtt.node_id"));
    }

    #[test]
    fn a_peer_leaves_by_its_offline_state_or_by_silence() {
        let t0 = Instant::now();
        let mut b = twins("bbbb0000");
        b.sighting("aaaa0000", Seen::Alive { answers_requests: None }, t0);
        assert_eq!(b.sighting("aaaa0000", Seen::Gone, t0), Some(Change::PeerGone("aaaa0000".into())));
        assert!(b.answers_requests() && !b.is_twin());
        assert_eq!(b.sighting("aaaa0000", Seen::Gone, t0), None, "told once");
        b.sighting("cccc0000", Seen::Alive { answers_requests: None }, t0);
        assert!(b.expire(t0 + Duration::from_secs(30)).is_empty());
        b.sighting("cccc0000", Seen::Alive { answers_requests: None }, t0 + Duration::from_secs(60));
        assert!(b.expire(t0 + Duration::from_secs(100)).is_empty(), "heard again at 60 s");
        assert_eq!(b.expire(t0 + Duration::from_secs(136)), vec![Change::PeerGone("cccc0000".into())]);
        assert!(!b.is_twin());
    }

    #[test]
    fn kicks_in_a_row_make_a_twin_and_a_failed_attempt_or_a_held_connection_ends_the_streak() {
        let mut t = twins("aaaa0000");
        assert_eq!(t.kicked(), None);
        t.attempt_failed();
        assert_eq!((t.kicked(), t.kicked()), (None, None), "a broker restart in between starts the count again");
        assert_eq!(t.kicked(), Some(Change::Kicked(3)));
        assert_eq!(t.kicked(), None, "told once per streak");
        assert!(t.is_twin());
        let w = t.warning().unwrap();
        assert!(w.contains("same client id \"millwright-raspberrypi\"") && w.contains("mqtt.client_id"), "{w}");
        assert!(t.answers_requests(), "kicks alone say nothing about who answers");
        assert_eq!(t.held(), Some(Change::KicksStopped));
        assert_eq!(t.held(), None);
        assert!(!t.is_twin() && t.warning().is_none());
    }
}
