//! Leaderboard and harness-usage rules: ranges as 12-hour UTC buckets, ranking with its tie
//! breaks, dominant models, averages over recorded values only, and zero-filled chart series.
//! Pure; the totals come from `usage_rollup`.

use std::cmp::Ordering;
use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

/// Width of a chart bucket.
pub const BUCKET_SECS: i64 = 12 * 3600;
/// Rows in a ranked table.
pub const TABLE_ROWS: usize = 30;
/// Entries charted per bucket.
pub const CHART_SERIES: usize = 5;

/// A leaderboard range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The last 7 days: 14 buckets.
    Week,
    /// The last 31 days: 62 buckets.
    Month,
}

impl Range {
    /// Parses `7d` (also the default, when empty) or `31d`.
    pub fn parse(s: &str) -> Result<Range, String> {
        match s {
            "" | "7d" => Ok(Range::Week),
            "31d" => Ok(Range::Month),
            other => Err(format!("range must be 7d or 31d, not {other:?}")),
        }
    }

    /// Its name, as given.
    pub fn name(self) -> &'static str {
        match self {
            Range::Week => "7d",
            Range::Month => "31d",
        }
    }

    fn bucket_count(self) -> i64 {
        match self {
            Range::Week => 14,
            Range::Month => 62,
        }
    }

    /// Bucket starts, oldest first; the last bucket holds `now`. Table totals cover exactly these
    /// buckets, so a row's total is the sum of its chart series.
    pub fn buckets(self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let last = bucket_of(now).timestamp();
        (0..self.bucket_count())
            .rev()
            .filter_map(|i| Utc.timestamp_opt(last - i * BUCKET_SECS, 0).single())
            .collect()
    }
}

/// The start of the 12-hour UTC bucket holding `t` (00:00 or 12:00).
pub fn bucket_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp().div_euclid(BUCKET_SECS) * BUCKET_SECS;
    Utc.timestamp_opt(s, 0).single().unwrap_or(t)
}

/// One user's usage over the range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserTotals {
    pub user_id: Uuid,
    pub requests: u64,
    pub cost_pusd: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum and count of the requests that recorded how many tools they offered.
    pub exposed_sum: u64,
    pub exposed_n: u64,
    /// Sum and count of the answers that recorded their tool calls.
    pub invoked_sum: u64,
    pub invoked_n: u64,
}

/// One user's use of one model over the range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelUse {
    pub model_key: String,
    pub requests: u64,
    pub cost_pusd: i64,
}

/// A ranked user.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedUser {
    pub user_id: Uuid,
    pub name: String,
    pub requests: u64,
    pub cost_pusd: i64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub avg_exposed_tools: Option<f64>,
    pub avg_invoked_tools: Option<f64>,
}

/// Users by spend, then request count, then name (then id, so the order is total).
pub fn rank_users(rows: &[UserTotals], names: &HashMap<Uuid, String>) -> Vec<RankedUser> {
    let mut out: Vec<RankedUser> = rows
        .iter()
        .map(|t| RankedUser {
            user_id: t.user_id,
            name: names.get(&t.user_id).cloned().unwrap_or_default(),
            requests: t.requests,
            cost_pusd: t.cost_pusd,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            avg_exposed_tools: mean(t.exposed_sum, t.exposed_n),
            avg_invoked_tools: mean(t.invoked_sum, t.invoked_n),
        })
        .collect();
    out.sort_by(|a, b| {
        b.cost_pusd
            .cmp(&a.cost_pusd)
            .then(b.requests.cmp(&a.requests))
            .then_with(|| a.name.cmp(&b.name))
            .then(a.user_id.cmp(&b.user_id))
    });
    out
}

/// The model with the most requests, then the most spend, then the smallest key.
pub fn dominant_model(models: &[ModelUse]) -> String {
    models
        .iter()
        .max_by(|a, b| {
            a.requests
                .cmp(&b.requests)
                .then(a.cost_pusd.cmp(&b.cost_pusd))
                // The smaller key wins a full tie, so it must compare as "greater".
                .then(b.model_key.cmp(&a.model_key))
        })
        .map(|m| m.model_key.clone())
        .unwrap_or_default()
}

fn mean(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}

/// One harness's usage over the range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HarnessTotals {
    pub key: String,
    pub label: String,
    pub requests: u64,
    pub cost_pusd: i64,
}

/// Harnesses by request count, then spend, then key.
pub fn rank_harnesses(mut rows: Vec<HarnessTotals>) -> Vec<HarnessTotals> {
    rows.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then(b.cost_pusd.cmp(&a.cost_pusd))
            .then_with(|| a.key.cmp(&b.key))
    });
    rows
}

/// Spend and requests per bucket of `buckets`, zero where `points` has none. Points outside
/// the buckets are ignored.
pub fn zero_fill(
    buckets: &[DateTime<Utc>],
    points: &[(DateTime<Utc>, i64, u64)],
) -> (Vec<i64>, Vec<u64>) {
    let mut cost = vec![0i64; buckets.len()];
    let mut requests = vec![0u64; buckets.len()];
    for (at, c, r) in points {
        if let Ok(i) = buckets.binary_search_by(|b| b.cmp(at).then(Ordering::Equal)) {
            cost[i] += c;
            requests[i] += r;
        }
    }
    (cost, requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn uid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn totals(user: u128, requests: u64, cost: i64) -> UserTotals {
        UserTotals {
            user_id: uid(user),
            requests,
            cost_pusd: cost,
            ..Default::default()
        }
    }

    #[test]
    fn buckets_are_twelve_hour_utc_and_end_with_now() {
        let cases = [
            ("2026-11-29T03:17:00Z", "2026-11-29T00:00:00Z"),
            ("2026-11-29T12:00:00Z", "2026-11-29T12:00:00Z"),
            ("2026-11-29T11:59:59Z", "2026-11-29T00:00:00Z"),
            ("2026-11-29T23:59:59+05:00", "2026-11-29T12:00:00Z"),
        ];
        for (t, want) in cases {
            assert_eq!(bucket_of(at(t)), at(want), "{t}");
        }
        let week = Range::Week.buckets(at("2026-11-29T03:17:00Z"));
        assert_eq!(week.len(), 14);
        assert_eq!(week[0], at("2026-11-22T12:00:00Z"));
        assert_eq!(week[13], at("2026-11-29T00:00:00Z"));
        let month = Range::Month.buckets(at("2026-11-29T13:00:00Z"));
        assert_eq!(month.len(), 62);
        assert_eq!(month[0], at("2026-10-30T00:00:00Z"));
        assert!(month
            .windows(2)
            .all(|w| w[1] - w[0] == chrono::Duration::hours(12)));
    }

    #[test]
    fn ranges_parse_strictly() {
        assert_eq!(Range::parse("").unwrap(), Range::Week);
        assert_eq!(Range::parse("7d").unwrap(), Range::Week);
        assert_eq!(Range::parse("31d").unwrap(), Range::Month);
        for bad in ["30d", "7", "1w", "7D"] {
            assert!(
                Range::parse(bad).unwrap_err().contains("7d or 31d"),
                "{bad}"
            );
        }
    }

    #[test]
    fn users_rank_by_spend_then_requests_then_name() {
        let rows = vec![
            totals(1, 5, 100), // "carol": ties with bob on spend, fewer requests
            totals(2, 9, 100), // "bob"
            totals(3, 9, 100), // "alice": ties with bob on both, wins on name
            totals(4, 1, 500), // "dave": most spend
            totals(5, 0, 0),   // "eve"
        ];
        let names: HashMap<Uuid, String> = [
            (uid(1), "carol"),
            (uid(2), "bob"),
            (uid(3), "alice"),
            (uid(4), "dave"),
            (uid(5), "eve"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
        let ranked: Vec<String> = rank_users(&rows, &names)
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(ranked, ["dave", "alice", "bob", "carol", "eve"]);
    }

    #[test]
    fn dominant_model_by_requests_then_spend_then_key() {
        // Per model (key, requests, spend), and the model that should dominate.
        type Models<'a> = &'a [(&'a str, u64, i64)];
        let cases: &[(Models, &str)] = &[
            (&[("a", 1, 900), ("b", 2, 1)], "b"),
            (&[("a", 2, 1), ("b", 2, 5)], "b"),
            (&[("z", 2, 5), ("b", 2, 5)], "b"),
            (&[("only", 0, 0)], "only"),
        ];
        for (models, want) in cases {
            let uses: Vec<ModelUse> = models
                .iter()
                .map(|(m, r, c)| ModelUse {
                    model_key: m.to_string(),
                    requests: *r,
                    cost_pusd: *c,
                })
                .collect();
            assert_eq!(dominant_model(&uses), *want, "{models:?}");
        }
        assert_eq!(dominant_model(&[]), "");
    }

    #[test]
    fn tool_averages_ignore_unrecorded_requests() {
        // 12 tools over 3 recorded requests of 10 (7 did not record): 4, not 1.2.
        let mut a = totals(1, 10, 0);
        a.exposed_sum = 12;
        a.exposed_n = 3;
        let r = &rank_users(&[a], &HashMap::new())[0];
        assert_eq!(r.avg_exposed_tools, Some(4.0));
        assert_eq!(r.avg_invoked_tools, None, "never recorded: absent, not 0");
        let mut z = totals(2, 4, 0);
        z.invoked_n = 4;
        assert_eq!(
            rank_users(&[z], &HashMap::new())[0].avg_invoked_tools,
            Some(0.0),
            "recorded zeros stay zeros"
        );
    }

    #[test]
    fn harnesses_rank_by_requests_then_spend_then_key() {
        let h = |k: &str, r: u64, c: i64| HarnessTotals {
            key: k.into(),
            label: k.into(),
            requests: r,
            cost_pusd: c,
        };
        let ranked: Vec<String> = rank_harnesses(vec![
            h("curl", 5, 0),
            h("codex_cli", 9, 1),
            h("claude_code", 9, 7),
            h("aider", 5, 0),
        ])
        .into_iter()
        .map(|x| x.key)
        .collect();
        assert_eq!(ranked, ["claude_code", "codex_cli", "aider", "curl"]);
    }

    #[test]
    fn chart_series_are_zero_filled_and_aligned() {
        let buckets = Range::Week.buckets(at("2026-11-29T03:00:00Z"));
        let points = [
            (at("2026-11-22T12:00:00Z"), 5, 1),
            (at("2026-11-29T00:00:00Z"), 7, 2),
            (at("2026-11-29T00:00:00Z"), 1, 1),
            (at("2026-11-01T00:00:00Z"), 99, 99), // outside: ignored
        ];
        let (cost, requests) = zero_fill(&buckets, &points);
        assert_eq!(cost.len(), 14);
        assert_eq!(cost[0], 5);
        assert_eq!(cost[13], 8);
        assert_eq!(requests[13], 3);
        assert!(cost[1..13].iter().all(|c| *c == 0));
    }
}
