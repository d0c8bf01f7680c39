//! Which targets a request tries, in which order, and when a failed attempt moves on.
//!
//! The first attempt goes to a target picked by weight (load balancing); later attempts take
//! the route's other targets in their configured order (fallback), then start over, until the
//! policy's attempt budget is spent. Pure logic: the request path supplies the random roll.

use std::time::Duration;

use crate::snapshot::Route;

/// Statuses that move on to the next attempt when the route does not say otherwise.
pub const DEFAULT_RETRY_ON: [u16; 5] = [429, 500, 502, 503, 504];

/// Longest a whole request may take when the route does not say otherwise.
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(600);

/// A route's policy with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Upstream attempts at most.
    pub max_attempts: usize,
    /// Statuses that move on.
    pub retry_on: Vec<u16>,
    /// Pause before the first retry; doubled for each later one.
    pub backoff: Duration,
    /// Per-attempt time to response headers, when the route sets one.
    pub first_byte_timeout: Option<Duration>,
    /// Whole-request deadline.
    pub total_timeout: Duration,
}

impl Policy {
    /// The effective policy of `route`.
    pub fn of(route: &Route) -> Policy {
        let p = &route.policy;
        Policy {
            max_attempts: if p.max_attempts == 0 {
                route.targets.len().max(1)
            } else {
                p.max_attempts as usize
            },
            retry_on: if p.retry_on_status.is_empty() {
                DEFAULT_RETRY_ON.to_vec()
            } else {
                p.retry_on_status.iter().map(|s| *s as u16).collect()
            },
            backoff: Duration::from_millis(p.backoff_ms as u64),
            first_byte_timeout: (p.first_byte_timeout_ms > 0)
                .then(|| Duration::from_millis(p.first_byte_timeout_ms as u64)),
            total_timeout: if p.total_timeout_ms == 0 {
                DEFAULT_TOTAL_TIMEOUT
            } else {
                Duration::from_millis(p.total_timeout_ms as u64)
            },
        }
    }

    /// The pause before attempt `n` (0-based; none before the first).
    pub fn backoff_before(&self, n: usize) -> Duration {
        if n == 0 || self.backoff.is_zero() {
            return Duration::ZERO;
        }
        self.backoff
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(Duration::from_secs(30))
    }
}

/// Target indices in the order they are tried. `eligible` filters out targets that cannot serve
/// the operation; `roll` is uniform in `0..` the eligible targets' total weight.
pub fn attempt_order(
    route: &Route,
    eligible: &[bool],
    roll: u64,
    max_attempts: usize,
) -> Vec<usize> {
    let candidates: Vec<usize> = (0..route.targets.len()).filter(|i| eligible[*i]).collect();
    if candidates.is_empty() || max_attempts == 0 {
        return Vec::new();
    }
    let total: u64 = candidates
        .iter()
        .map(|i| route.targets[*i].weight as u64)
        .sum();
    let first = if total == 0 {
        candidates[0]
    } else {
        let mut r = roll % total;
        let mut pick = candidates[0];
        for &i in &candidates {
            let w = route.targets[i].weight as u64;
            if r < w {
                pick = i;
                break;
            }
            r -= w;
        }
        pick
    };
    let mut cycle = vec![first];
    cycle.extend(candidates.iter().copied().filter(|i| *i != first));
    cycle.iter().copied().cycle().take(max_attempts).collect()
}

/// What happened on one attempt, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// No connection.
    ConnectError,
    /// No response headers in time.
    Timeout,
    /// The response broke before anything reached the client.
    BodyError,
    /// A response with this status.
    Status(u16),
}

/// Whether to move on to the next attempt (if one is left).
pub fn should_retry(policy: &Policy, result: AttemptResult) -> bool {
    match result {
        AttemptResult::ConnectError | AttemptResult::Timeout | AttemptResult::BodyError => true,
        AttemptResult::Status(s) => policy.retry_on.contains(&s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Target;
    use weir_proto::config::RoutePolicy;

    fn route(weights: &[u32], policy: RoutePolicy) -> Route {
        Route {
            model_key: "m".into(),
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, w)| Target {
                    provider_key: format!("p{i}"),
                    upstream_model: "u".into(),
                    weight: *w,
                })
                .collect(),
            operations: Default::default(),
            policy,
        }
    }

    #[test]
    fn defaults() {
        let p = Policy::of(&route(&[1, 1, 1], RoutePolicy::default()));
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(p.total_timeout, DEFAULT_TOTAL_TIMEOUT);
        assert_eq!(p.first_byte_timeout, None);
        assert_eq!(p.backoff_before(3), Duration::ZERO);
        let p = Policy::of(&route(
            &[1],
            RoutePolicy {
                max_attempts: 4,
                retry_on_status: vec![503],
                backoff_ms: 100,
                first_byte_timeout_ms: 2_000,
                total_timeout_ms: 5_000,
                require_price: false,
            },
        ));
        assert_eq!(p.max_attempts, 4);
        assert_eq!(p.retry_on, vec![503]);
        assert_eq!(p.backoff_before(0), Duration::ZERO);
        assert_eq!(p.backoff_before(1), Duration::from_millis(100));
        assert_eq!(p.backoff_before(3), Duration::from_millis(400));
        assert_eq!(p.first_byte_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn orders() {
        let r = route(&[1, 3, 0], RoutePolicy::default());
        let all = [true, true, true];
        // Rolls 0 pick target 0, rolls 1..=3 pick target 1; weight-0 targets are fallbacks only.
        assert_eq!(attempt_order(&r, &all, 0, 3), vec![0, 1, 2]);
        assert_eq!(attempt_order(&r, &all, 2, 3), vec![1, 0, 2]);
        assert_eq!(attempt_order(&r, &all, 2, 5), vec![1, 0, 2, 1, 0]);
        assert_eq!(attempt_order(&r, &all, 2, 1), vec![1]);
        // Ineligible targets are never tried.
        assert_eq!(attempt_order(&r, &[false, true, true], 0, 3), vec![1, 2, 1]);
        assert_eq!(attempt_order(&r, &[false, false, true], 7, 2), vec![2, 2]);
        assert!(attempt_order(&r, &[false, false, false], 0, 3).is_empty());
    }

    #[test]
    fn retry_decisions() {
        let p = Policy::of(&route(&[1], RoutePolicy::default()));
        let cases = [
            (AttemptResult::ConnectError, true),
            (AttemptResult::Timeout, true),
            (AttemptResult::BodyError, true),
            (AttemptResult::Status(429), true),
            (AttemptResult::Status(503), true),
            (AttemptResult::Status(400), false),
            (AttemptResult::Status(401), false),
            (AttemptResult::Status(200), false),
        ];
        for (r, want) in cases {
            assert_eq!(should_retry(&p, r), want, "{r:?}");
        }
    }
}
