//! Rate limits and spend budgets of keys, users and teams, enforced by each node before any
//! upstream call.
//!
//! Requests and tokens per minute are counted per node with a sliding-window counter (the
//! previous minute's count weighted by how much of it still overlaps the last 60 s, plus the
//! current minute's), so a fleet of N nodes admits up to N times a limit; see docs/limits.md.
//! Budgets hold across the fleet: the control plane pushes each subject's fleet spend as of a
//! moment, and the node adds the cost of its own requests since that moment.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Milliseconds in a minute.
const MINUTE_MS: i64 = 60_000;

/// Shards of the subject table, so concurrent requests rarely share a lock.
const SHARDS: usize = 16;

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The limits of one subject (a key, user or team), as the config stream delivers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectLimits {
    /// Requests per minute, per node.
    pub requests_per_minute: Option<u64>,
    /// Tokens per minute, per node (counted when responses report usage).
    pub tokens_per_minute: Option<u64>,
    /// Spend allowed in the current budget period, in picodollars.
    pub budget_pusd: Option<i64>,
    /// The fleet's spend in the period up to `spent_as_of_ms`.
    pub fleet_spent_pusd: i64,
    /// When `fleet_spent_pusd` was summed (Unix ms); local spend after it is added.
    pub spent_as_of_ms: i64,
}

impl SubjectLimits {
    /// Whether there is anything to enforce.
    pub fn is_empty(&self) -> bool {
        self.requests_per_minute.is_none()
            && self.tokens_per_minute.is_none()
            && self.budget_pusd.is_none()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Too many requests this minute.
    Requests {
        /// e.g. `key:…`, `user:…`, `team:…`.
        subject: String,
        /// The limit.
        limit: u64,
    },
    /// Too many tokens this minute.
    Tokens {
        /// Subject.
        subject: String,
        /// The limit.
        limit: u64,
    },
    /// The budget is spent.
    Budget {
        /// Subject.
        subject: String,
        /// Budget in picodollars.
        budget_pusd: i64,
        /// Fleet spend plus this node's since the last sync.
        spent_pusd: i64,
    },
}

/// A sliding-window counter over whole minutes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Window {
    minute: i64,
    current: u64,
    previous: u64,
}

impl Window {
    fn roll(&mut self, now_ms: i64) {
        let m = now_ms.div_euclid(MINUTE_MS);
        if m == self.minute {
            return;
        }
        self.previous = if m == self.minute + 1 {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.minute = m;
    }

    /// The count over the last 60 s, estimated.
    pub fn estimate(&mut self, now_ms: i64) -> u64 {
        self.roll(now_ms);
        let into = now_ms.rem_euclid(MINUTE_MS) as u64;
        self.previous * (MINUTE_MS as u64 - into) / MINUTE_MS as u64 + self.current
    }

    /// Counts `n` now.
    pub fn add(&mut self, now_ms: i64, n: u64) {
        self.roll(now_ms);
        self.current = self.current.saturating_add(n);
    }

    /// Takes back `n` counted now.
    pub fn remove(&mut self, now_ms: i64, n: u64) {
        self.roll(now_ms);
        self.current = self.current.saturating_sub(n);
    }
}

/// The first limit `l` refuses, if any.
fn check(subject: &str, l: &SubjectLimits, st: &mut SubjectState, now_ms: i64) -> Option<Denial> {
    if let Some(limit) = l.requests_per_minute {
        if st.requests.estimate(now_ms) >= limit {
            return Some(Denial::Requests {
                subject: subject.to_string(),
                limit,
            });
        }
    }
    if let Some(limit) = l.tokens_per_minute {
        if st.tokens.estimate(now_ms) >= limit {
            return Some(Denial::Tokens {
                subject: subject.to_string(),
                limit,
            });
        }
    }
    if let Some(budget) = l.budget_pusd {
        let spent = l
            .fleet_spent_pusd
            .saturating_add(st.local_spend_after(l.spent_as_of_ms));
        if spent >= budget {
            return Some(Denial::Budget {
                subject: subject.to_string(),
                budget_pusd: budget,
                spent_pusd: spent,
            });
        }
    }
    None
}

#[derive(Debug, Default)]
struct SubjectState {
    requests: Window,
    tokens: Window,
    /// This node's spend not yet in a fleet sum.
    local_spend: VecDeque<LocalSpend>,
}

#[derive(Debug)]
struct LocalSpend {
    /// When its ledger row was known to be committed; [`UNSETTLED`] until then.
    settled_ms: i64,
    pusd: i64,
    ticket: u64,
}

/// The stamp of spend whose ledger row may not be committed yet: no fleet sum can contain it.
const UNSETTLED: i64 = i64::MAX;

impl SubjectState {
    fn local_spend_after(&mut self, as_of_ms: i64) -> i64 {
        self.local_spend.retain(|s| s.settled_ms > as_of_ms);
        self.local_spend.iter().map(|s| s.pusd).sum()
    }
}

/// Spend this node counts on its own until the control plane has committed its ledger row.
///
/// A fleet sum leaves out the last `SPEND_MARGIN_MS` and contains every row committed when it
/// was taken. Spend stamped when the log worker counted it could fall out of the local count
/// before its row was committed (an ingest backlog over the margin) and be counted nowhere;
/// stamped at the ack, it leaves only once a sum taken after the commit replaces it.
#[derive(Debug)]
pub struct SpendTicket {
    limiter: Arc<Limiter>,
    subjects: Vec<String>,
    id: u64,
}

impl SpendTicket {
    /// The ledger row is committed (or will never be): the next fleet sum taken after `now_ms`
    /// plus the margin may replace this spend.
    pub fn settle(self, now_ms: i64) {
        for subject in &self.subjects {
            let mut shard = self.limiter.shard(subject).lock().expect("limiter shard");
            if let Some(st) = shard.get_mut(subject.as_str()) {
                if let Some(s) = st.local_spend.iter_mut().find(|s| s.ticket == self.id) {
                    s.settled_ms = now_ms;
                }
            }
        }
    }
}

static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// Per-subject counters of one node.
#[derive(Debug)]
pub struct Limiter {
    shards: Vec<Mutex<HashMap<String, SubjectState>>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Limiter {
    fn shard(&self, subject: &str) -> &Mutex<HashMap<String, SubjectState>> {
        // FNV-1a: cheap and good enough to spread subject ids.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in subject.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        &self.shards[(h as usize) % SHARDS]
    }

    /// Admits a request for every subject or refuses it naming the first limit hit; an admitted
    /// request is counted against every subject's requests per minute. Each subject is checked
    /// and counted under one lock, so concurrent requests cannot all slip past a limit; if a
    /// later subject refuses, the counts already taken are given back.
    pub fn admit(&self, subjects: &[(&str, &SubjectLimits)], now_ms: i64) -> Result<(), Denial> {
        let mut counted: Vec<&str> = Vec::new();
        let mut denial = None;
        for (subject, l) in subjects {
            if l.is_empty() {
                continue;
            }
            let mut shard = self.shard(subject).lock().expect("limiter shard");
            let st = shard.entry(subject.to_string()).or_default();
            if let Some(d) = check(subject, l, st, now_ms) {
                denial = Some(d);
                break;
            }
            if l.requests_per_minute.is_some() {
                st.requests.add(now_ms, 1);
                counted.push(subject);
            }
        }
        let Some(d) = denial else { return Ok(()) };
        for subject in counted {
            let mut shard = self.shard(subject).lock().expect("limiter shard");
            if let Some(st) = shard.get_mut(subject) {
                st.requests.remove(now_ms, 1);
            }
        }
        Err(d)
    }

    /// Counts a finished request's tokens and cost against every subject; spend counts until
    /// the returned ticket is settled (see [`SpendTicket`]).
    pub fn record(
        self: &Arc<Self>,
        subjects: &[(&str, &SubjectLimits)],
        tokens: u64,
        cost_pusd: Option<i64>,
        now_ms: i64,
    ) -> Option<SpendTicket> {
        let mut ticket: Option<SpendTicket> = None;
        for (subject, l) in subjects {
            let counts_tokens = l.tokens_per_minute.is_some() && tokens > 0;
            let counts_spend = l.budget_pusd.is_some() && cost_pusd.is_some_and(|c| c > 0);
            if !counts_tokens && !counts_spend {
                continue;
            }
            let mut shard = self.shard(subject).lock().expect("limiter shard");
            let st = shard.entry(subject.to_string()).or_default();
            if counts_tokens {
                st.tokens.add(now_ms, tokens);
            }
            if let Some(c) = cost_pusd.filter(|_| counts_spend) {
                let t = ticket.get_or_insert_with(|| SpendTicket {
                    limiter: self.clone(),
                    subjects: Vec::new(),
                    id: NEXT_TICKET.fetch_add(1, Ordering::Relaxed),
                });
                t.subjects.push(subject.to_string());
                st.local_spend.push_back(LocalSpend {
                    settled_ms: UNSETTLED,
                    pusd: c,
                    ticket: t.id,
                });
            }
        }
        ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(n: u64) -> SubjectLimits {
        SubjectLimits {
            requests_per_minute: Some(n),
            ..Default::default()
        }
    }

    #[test]
    fn sliding_window_weights_the_previous_minute() {
        let mut w = Window::default();
        let t0 = 10 * MINUTE_MS;
        w.add(t0 + 1_000, 60);
        assert_eq!(w.estimate(t0 + 59_000), 60);
        // Half-way into the next minute, half of the previous one still counts.
        assert_eq!(w.estimate(t0 + MINUTE_MS + 30_000), 30);
        w.add(t0 + MINUTE_MS + 30_000, 5);
        assert_eq!(w.estimate(t0 + MINUTE_MS + 30_000), 35);
        // Two minutes later nothing is left.
        assert_eq!(w.estimate(t0 + 3 * MINUTE_MS), 0);
    }

    #[test]
    fn requests_per_minute() {
        let l = Arc::new(Limiter::default());
        let limits = rpm(3);
        let s = [("key:a", &limits)];
        let t = 5 * MINUTE_MS;
        for i in 0..3 {
            assert!(l.admit(&s, t + i).is_ok());
        }
        assert_eq!(
            l.admit(&s, t + 10),
            Err(Denial::Requests {
                subject: "key:a".into(),
                limit: 3
            })
        );
        // Another subject is untouched; a refused request is not counted.
        let other = [("key:b", &limits)];
        assert!(l.admit(&other, t).is_ok());
        assert!(l.admit(&s, t + 2 * MINUTE_MS).is_ok());
    }

    #[test]
    fn every_subject_must_admit_and_the_first_denial_is_named() {
        let l = Arc::new(Limiter::default());
        let (key, user) = (rpm(10), rpm(1));
        let s = [("key:a", &key), ("user:u", &user)];
        assert!(l.admit(&s, 0).is_ok());
        match l.admit(&s, 1) {
            Err(Denial::Requests { subject, .. }) => assert_eq!(subject, "user:u"),
            other => panic!("{other:?}"),
        }
        // The refused request's count on the key was given back: 9 more fit under its 10.
        let key_only = [("key:a", &key)];
        for i in 0..9 {
            assert!(l.admit(&key_only, 2 + i).is_ok(), "request {i}");
        }
        assert!(l.admit(&key_only, 20).is_err());
    }

    #[test]
    fn tokens_count_after_the_response() {
        let l = Arc::new(Limiter::default());
        let limits = SubjectLimits {
            tokens_per_minute: Some(100),
            ..Default::default()
        };
        let s = [("team:t", &limits)];
        assert!(l.admit(&s, 0).is_ok());
        l.record(&s, 80, None, 1);
        assert!(l.admit(&s, 2).is_ok(), "80 < 100");
        l.record(&s, 30, None, 3);
        assert!(matches!(
            l.admit(&s, 4),
            Err(Denial::Tokens { limit: 100, .. })
        ));
    }

    #[test]
    fn budgets_add_local_spend_since_the_fleet_sum() {
        let l = Arc::new(Limiter::default());
        let mut limits = SubjectLimits {
            budget_pusd: Some(1_000),
            fleet_spent_pusd: 900,
            spent_as_of_ms: 100,
            ..Default::default()
        };
        let admit = |l: &Limiter, lim: &SubjectLimits, now| l.admit(&[("user:u", lim)], now);
        assert!(admit(&l, &limits, 200).is_ok());
        let first = l.record(&[("user:u", &limits)], 0, Some(60), 210).unwrap();
        assert!(admit(&l, &limits, 220).is_ok(), "960 < 1000");
        let second = l.record(&[("user:u", &limits)], 0, Some(60), 230).unwrap();
        assert!(matches!(
            admit(&l, &limits, 240),
            Err(Denial::Budget {
                spent_pusd: 1_020,
                ..
            })
        ));
        // A fleet sum taken before the ledger rows were committed cannot contain them: the
        // spend stays counted locally whatever that sum's as_of.
        limits.spent_as_of_ms = 10_000;
        assert!(matches!(
            admit(&l, &limits, 10_010),
            Err(Denial::Budget {
                spent_pusd: 1_020,
                ..
            })
        ));
        // Once committed (acked at 250), a sum taken after that contains them: no double count.
        first.settle(250);
        second.settle(250);
        limits.fleet_spent_pusd = 1_020;
        limits.spent_as_of_ms = 300;
        assert!(admit(&l, &limits, 310).is_err());
        limits.budget_pusd = Some(2_000);
        assert!(admit(&l, &limits, 320).is_ok());
        // Unpriced requests (no cost) do not count.
        assert!(l.record(&[("user:u", &limits)], 0, None, 331).is_none());
        assert!(admit(&l, &limits, 340).is_ok());
    }
}
