//! Agent sessions, read from the request-log tables: a session is the request logs that share an
//! owner (the key's user or service account) and a session id (docs/sessions.md). No second
//! write path; the partial index of migration 0015 finds a session's rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;
use weir_proto::admin::{SessionDetail, SessionSummary, SessionTurn};
use weir_proto::pricing;

/// A session's key: its owner and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub owner: Uuid,
    pub session_id: String,
}

impl SessionKey {
    /// Parses `<owner uuid>:<session id>`.
    pub fn parse(s: &str) -> Result<SessionKey, String> {
        let (owner, session_id) = s
            .split_once(':')
            .filter(|(_, sid)| !sid.is_empty())
            .ok_or_else(|| format!("session id {s:?} is not <owner id>:<session id>"))?;
        let owner = Uuid::parse_str(owner)
            .map_err(|_| format!("session id {s:?}: the owner {owner:?} is not a UUID"))?;
        Ok(SessionKey {
            owner,
            session_id: session_id.to_string(),
        })
    }

    /// The `<owner>:<session id>` form.
    pub fn text(&self) -> String {
        format!("{}:{}", self.owner, self.session_id)
    }
}

/// How a session list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    LastSeen,
    Cost,
}

impl Sort {
    /// Parses `last_seen` (the default, also when empty) or `cost`.
    pub fn parse(s: &str) -> Result<Sort, String> {
        match s {
            "" | "last_seen" => Ok(Sort::LastSeen),
            "cost" => Ok(Sort::Cost),
            other => Err(format!("sort must be last_seen or cost, not {other:?}")),
        }
    }
}

/// Where the next page starts: after the session with this (cost and) last log id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub cost: i64,
    pub last_log: Uuid,
}

impl Cursor {
    /// Opaque text for clients.
    pub fn encode(&self) -> String {
        format!("s1.{}.{}", self.cost, self.last_log.simple())
    }

    /// Reads what [`Cursor::encode`] wrote.
    pub fn decode(s: &str) -> Result<Cursor, String> {
        let bad = || format!("cursor {s:?} is not one this API returned");
        let mut parts = s.split('.');
        if parts.next() != Some("s1") {
            return Err(bad());
        }
        let cost = parts.next().and_then(|c| c.parse().ok()).ok_or_else(bad)?;
        let last_log = parts
            .next()
            .and_then(|u| Uuid::parse_str(u).ok())
            .ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Cursor { cost, last_log })
    }
}

/// Filters of a session list, validated.
#[derive(Debug, Clone)]
pub struct Filter {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub user: Option<Uuid>,
    pub service_account: Option<Uuid>,
    /// A team viewer's own team (always applied).
    pub viewer_team: Option<Uuid>,
    pub team: Option<Uuid>,
    pub harness: Option<String>,
    pub model: Option<String>,
    pub has_errors: bool,
    pub min_cost_pusd: Option<i64>,
    pub sort: Sort,
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> u64 {
    (b - a).num_milliseconds().max(0) as u64
}

/// A page of sessions and the cursor of the next.
///
/// Newest-first pages without session-level filters (the common view) find their sessions by
/// walking the newest session rows and aggregate only those; cost order and filters on session
/// totals aggregate every session in the range.
pub async fn list(pool: &PgPool, f: &Filter) -> Result<(Vec<SessionSummary>, String), sqlx::Error> {
    let session_filters =
        f.harness.is_some() || f.model.is_some() || f.has_errors || f.min_cost_pusd.is_some();
    if f.sort == Sort::LastSeen && !session_filters {
        list_recent(pool, f).await
    } else {
        list_aggregated(pool, f, None).await
    }
}

/// The page's sessions, found by scanning session rows newest-first from the cursor: a session
/// first met there is newer than every later one, unless it has rows at or above the cursor
/// (then an earlier page listed it).
async fn list_recent(
    pool: &PgPool,
    f: &Filter,
) -> Result<(Vec<SessionSummary>, String), sqlx::Error> {
    let want = f.limit as usize + 1;
    // (session id, owner, its newest log id), newest first.
    let mut picked: Vec<(String, Uuid, Uuid)> = Vec::new();
    let mut met: std::collections::HashSet<(String, Uuid)> = std::collections::HashSet::new();
    let mut below = f.cursor.map(|c| c.last_log);
    let mut window: i64 = (want as i64 * 40).max(1000);
    loop {
        let rows: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
            "SELECT coalesce(l.service_account_id, l.user_id), l.session_id, l.log_id
             FROM request_logs l
             WHERE l.session_id IS NOT NULL
               AND coalesce(l.service_account_id, l.user_id) IS NOT NULL
               AND l.created_at >= $1 AND l.created_at < $2
               AND ($3::uuid IS NULL OR l.user_id = $3)
               AND ($4::uuid IS NULL OR l.service_account_id = $4)
               AND ($5::uuid IS NULL OR l.team_id = $5)
               AND ($6::uuid IS NULL OR l.team_id = $6)
               AND ($7::uuid IS NULL OR l.log_id < $7)
             ORDER BY l.log_id DESC
             LIMIT $8",
        )
        .bind(f.since)
        .bind(f.until)
        .bind(f.user)
        .bind(f.service_account)
        .bind(f.viewer_team)
        .bind(f.team)
        .bind(below)
        .bind(window)
        .fetch_all(pool)
        .await?;
        let mut fresh: Vec<(String, Uuid, Uuid)> = Vec::new();
        for (owner, sid, log_id) in &rows {
            if met.insert((sid.clone(), *owner)) {
                fresh.push((sid.clone(), *owner, *log_id));
            }
        }
        if let (Some(cursor), false) = (f.cursor, fresh.is_empty()) {
            // Sessions with rows at or above the cursor were on an earlier page.
            let sids: Vec<String> = fresh.iter().map(|k| k.0.clone()).collect();
            let owners: Vec<Uuid> = fresh.iter().map(|k| k.1).collect();
            let earlier: Vec<(String, Uuid)> = sqlx::query_as(
                "SELECT DISTINCT l.session_id, coalesce(l.service_account_id, l.user_id)
                 FROM request_logs l
                 JOIN UNNEST($1::text[], $2::uuid[]) AS k(sid, owner)
                   ON l.session_id = k.sid AND coalesce(l.service_account_id, l.user_id) = k.owner
                 WHERE l.log_id >= $3 AND l.created_at >= $4 AND l.created_at < $5",
            )
            .bind(&sids)
            .bind(&owners)
            .bind(cursor.last_log)
            .bind(f.since)
            .bind(f.until)
            .fetch_all(pool)
            .await?;
            fresh.retain(|k| {
                !earlier
                    .iter()
                    .any(|(sid, owner)| *sid == k.0 && *owner == k.1)
            });
        }
        picked.extend(fresh);
        if picked.len() >= want || (rows.len() as i64) < window {
            break;
        }
        below = rows.last().map(|r| r.2);
        window = (window * 2).min(200_000);
    }
    let more = picked.len() >= want;
    picked.truncate(f.limit as usize);
    let Some(last) = picked.last().map(|k| k.2) else {
        return Ok((Vec::new(), String::new()));
    };
    let page = Filter {
        cursor: None,
        limit: picked.len() as i64,
        ..f.clone()
    };
    let keys: Vec<(String, Uuid)> = picked.iter().map(|k| (k.0.clone(), k.1)).collect();
    let (sessions, _) = list_aggregated(pool, &page, Some(&keys)).await?;
    let next = if more {
        Cursor {
            cost: 0,
            last_log: last,
        }
        .encode()
    } else {
        String::new()
    };
    Ok((sessions, next))
}

/// Sessions aggregated over the range (only `keys`' when given: session id and owner).
async fn list_aggregated(
    pool: &PgPool,
    f: &Filter,
    keys: Option<&[(String, Uuid)]>,
) -> Result<(Vec<SessionSummary>, String), sqlx::Error> {
    let order = match f.sort {
        Sort::LastSeen => "s.last_log DESC",
        Sort::Cost => "s.cost DESC, s.last_log DESC",
    };
    let after = match f.sort {
        Sort::LastSeen => "s.last_log < $13",
        Sort::Cost => "(s.cost, s.last_log) < ($12, $13)",
    };
    // Given keys, drive from them through the session index, one session at a time; otherwise
    // aggregate the range.
    let from = if keys.is_some() {
        "UNNEST($15::text[], $16::uuid[]) AS k(sid, owner)
             JOIN request_logs l ON l.session_id = k.sid
                                 AND coalesce(l.service_account_id, l.user_id) = k.owner"
    } else {
        "request_logs l"
    };
    let rows = sqlx::query(&format!(
        "WITH s AS (
             SELECT coalesce(l.service_account_id, l.user_id) AS owner, l.session_id,
                    min(l.created_at) AS first_seen, max(l.created_at) AS last_seen,
                    (array_agg(l.log_id ORDER BY l.log_id DESC))[1] AS last_log, count(*) AS turns,
                    count(*) FILTER (WHERE l.status_code >= 400 OR l.outcome <> 'success') AS errors,
                    coalesce(sum(l.input_tokens), 0)::bigint AS input_tokens,
                    coalesce(sum(l.output_tokens), 0)::bigint AS output_tokens,
                    coalesce(sum(l.cost_pusd), 0)::bigint AS cost,
                    (array_agg(l.session_source ORDER BY l.log_id))[1] AS source,
                    (array_agg(l.harness_key ORDER BY l.log_id DESC))[1] AS harness,
                    (array_agg(l.user_id ORDER BY l.log_id DESC))[1] AS user_id,
                    (array_agg(l.service_account_id ORDER BY l.log_id DESC))[1] AS sa_id,
                    (array_agg(l.team_id ORDER BY l.log_id DESC))[1] AS team_id,
                    array_agg(DISTINCT l.model_key) FILTER (WHERE l.model_key <> '') AS models
             FROM {from}
             WHERE l.session_id IS NOT NULL
               AND coalesce(l.service_account_id, l.user_id) IS NOT NULL
               AND l.created_at >= $1 AND l.created_at < $2
               AND ($3::uuid IS NULL OR l.user_id = $3)
               AND ($4::uuid IS NULL OR l.service_account_id = $4)
               AND ($5::uuid IS NULL OR l.team_id = $5)
               AND ($6::uuid IS NULL OR l.team_id = $6)
               -- Typed here for when no keys drive the query: every bound parameter must appear.
               AND ($15::text[] IS NULL OR $16::uuid[] IS NOT NULL OR true)
             GROUP BY 1, 2
         )
         SELECT * FROM s
         WHERE ($7::text IS NULL OR s.harness = $7)
           AND ($8::text IS NULL OR $8 = ANY(s.models))
           AND (NOT $9 OR s.errors > 0)
           AND ($10::bigint IS NULL OR s.cost >= $10)
           AND (NOT $11 OR {after})
         ORDER BY {order}
         LIMIT $14"
    ))
    .bind(f.since)
    .bind(f.until)
    .bind(f.user)
    .bind(f.service_account)
    .bind(f.viewer_team)
    .bind(f.team)
    .bind(f.harness.as_deref())
    .bind(f.model.as_deref())
    .bind(f.has_errors)
    .bind(f.min_cost_pusd)
    .bind(f.cursor.is_some())
    .bind(f.cursor.map_or(0, |c| c.cost))
    .bind(f.cursor.map_or(Uuid::nil(), |c| c.last_log))
    .bind(f.limit + 1)
    .bind(keys.map(|k| k.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()))
    .bind(keys.map(|k| k.iter().map(|(_, o)| *o).collect::<Vec<_>>()))
    .fetch_all(pool)
    .await?;
    let more = rows.len() as i64 > f.limit;
    let page: Vec<&sqlx::postgres::PgRow> = rows.iter().take(f.limit as usize).collect();
    let next = match (more, page.last()) {
        (true, Some(last)) => Cursor {
            cost: last.get("cost"),
            last_log: last.get("last_log"),
        }
        .encode(),
        _ => String::new(),
    };
    Ok((page.into_iter().map(summary_from_row).collect(), next))
}

fn summary_from_row(r: &sqlx::postgres::PgRow) -> SessionSummary {
    let key = SessionKey {
        owner: r.get("owner"),
        session_id: r.get("session_id"),
    };
    let first: DateTime<Utc> = r.get("first_seen");
    let last: DateTime<Utc> = r.get("last_seen");
    let opt = |c: &str| {
        r.get::<Option<Uuid>, _>(c)
            .map(|u| u.to_string())
            .unwrap_or_default()
    };
    let mut models: Vec<String> = r
        .get::<Option<Vec<String>>, _>("models")
        .unwrap_or_default();
    models.sort();
    let cost: i64 = r.get("cost");
    SessionSummary {
        id: key.text(),
        session_id: key.session_id,
        source: r.get::<Option<String>, _>("source").unwrap_or_default(),
        user_id: opt("user_id"),
        service_account_id: opt("sa_id"),
        team_id: opt("team_id"),
        harness: r.get::<Option<String>, _>("harness").unwrap_or_default(),
        first_seen: ts(first),
        last_seen: ts(last),
        duration_ms: ms(first, last),
        turns: r.get::<i64, _>("turns").max(0) as u64,
        errors: r.get::<i64, _>("errors").max(0) as u64,
        input_tokens: r.get::<i64, _>("input_tokens").max(0) as u64,
        output_tokens: r.get::<i64, _>("output_tokens").max(0) as u64,
        cost_usd: pricing::format_usd(cost),
        cost_pusd: cost,
        models,
    }
}

/// One session with its turns, or `None` when it does not exist (or is another team's).
pub async fn get(
    pool: &PgPool,
    key: &SessionKey,
    viewer_team: Option<Uuid>,
) -> Result<Option<SessionDetail>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT log_id, request_id, created_at, turn_kind, model_key, operation, status_code,
                outcome, duration_us, ttfb_us, input_tokens, output_tokens, cached_input_tokens,
                reasoning_tokens, cost_pusd, pricing_status, attempt_count, exposed_tool_count,
                invoked_tool_count, session_source, harness_key, user_id, service_account_id,
                team_id
         FROM request_logs
         WHERE session_id = $1 AND coalesce(service_account_id, user_id) = $2
           AND ($3::uuid IS NULL OR team_id = $3)
         ORDER BY log_id",
    )
    .bind(&key.session_id)
    .bind(key.owner)
    .bind(viewer_team)
    .fetch_all(pool)
    .await?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let u = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    let mut d = SessionDetail::default();
    let mut models = BTreeSet::new();
    let (mut cost, mut errors, mut input, mut output) = (0i64, 0u64, 0u64, 0u64);
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut pricing_counts: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let status: i32 = r.get("status_code");
        let outcome: String = r.get("outcome");
        let model: String = r.get("model_key");
        let turn_kind: Option<String> = r.get("turn_kind");
        let pricing_status: Option<String> = r.get("pricing_status");
        let row_cost: Option<i64> = r.get("cost_pusd");
        let attempts: i16 = r.get("attempt_count");
        let exposed: Option<i32> = r.get("exposed_tool_count");
        let invoked: Option<i32> = r.get("invoked_tool_count");
        let turn = SessionTurn {
            log_id: r.get::<Uuid, _>("log_id").to_string(),
            request_id: r.get("request_id"),
            created_at: ts(r.get("created_at")),
            turn_kind: turn_kind.clone().unwrap_or_default(),
            model_key: model.clone(),
            operation: r.get("operation"),
            status_code: status.max(0) as u32,
            outcome: outcome.clone(),
            duration_ms: (r.get::<i64, _>("duration_us").max(0) / 1000) as u64,
            ttfb_ms: r
                .get::<Option<i64>, _>("ttfb_us")
                .map(|v| (v.max(0) / 1000) as u64),
            input_tokens: u(r.get("input_tokens")),
            output_tokens: u(r.get("output_tokens")),
            cost_usd: row_cost.map(pricing::format_usd).unwrap_or_default(),
            pricing_status: pricing_status.clone().unwrap_or_default(),
            attempts: attempts.max(0) as u32,
            exposed_tool_count: exposed.map(|v| v.max(0) as u32),
            invoked_tool_count: invoked.map(|v| v.max(0) as u32),
        };
        if status >= 400 || outcome != "success" {
            errors += 1;
        }
        if attempts > 1 {
            d.retried += 1;
        }
        if !model.is_empty() {
            models.insert(model);
        }
        cost += row_cost.unwrap_or(0);
        input += turn.input_tokens.unwrap_or(0);
        output += turn.output_tokens.unwrap_or(0);
        d.cached_input_tokens += u(r.get("cached_input_tokens")).unwrap_or(0);
        d.reasoning_tokens += u(r.get("reasoning_tokens")).unwrap_or(0);
        d.tools_offered += u64::from(turn.exposed_tool_count.unwrap_or(0));
        d.tool_calls += u64::from(turn.invoked_tool_count.unwrap_or(0));
        *kinds
            .entry(turn_kind.unwrap_or_else(|| "unknown".into()))
            .or_default() += 1;
        if let Some(p) = pricing_status {
            *pricing_counts.entry(p).or_default() += 1;
        }
        d.turns.push(turn);
    }
    let first_at: DateTime<Utc> = first.get("created_at");
    let last_at: DateTime<Utc> = last.get("created_at");
    let opt = |c: &str| {
        last.get::<Option<Uuid>, _>(c)
            .map(|u| u.to_string())
            .unwrap_or_default()
    };
    d.summary = Some(SessionSummary {
        id: key.text(),
        session_id: key.session_id.clone(),
        source: first
            .get::<Option<String>, _>("session_source")
            .unwrap_or_default(),
        user_id: opt("user_id"),
        service_account_id: opt("service_account_id"),
        team_id: opt("team_id"),
        harness: last.get("harness_key"),
        first_seen: ts(first_at),
        last_seen: ts(last_at),
        duration_ms: ms(first_at, last_at),
        turns: rows.len() as u64,
        errors,
        input_tokens: input,
        output_tokens: output,
        cost_usd: pricing::format_usd(cost),
        cost_pusd: cost,
        models: models.into_iter().collect(),
    });
    d.turns_by_kind = kinds.into_iter().collect();
    d.pricing = pricing_counts.into_iter().collect();
    Ok(Some(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_round_trip_and_bad_ones_are_named() {
        let owner = Uuid::from_u128(7);
        let k = SessionKey {
            owner,
            session_id: "ses_1:with/colon".into(),
        };
        assert_eq!(SessionKey::parse(&k.text()).unwrap(), k);
        for (bad, want) in [
            ("nocolon", "is not <owner id>:<session id>"),
            ("abc:s", "is not a UUID"),
            ("00000000-0000-0000-0000-000000000007:", "is not <owner id>"),
        ] {
            let e = SessionKey::parse(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_text() {
        let c = Cursor {
            cost: 12345,
            last_log: Uuid::from_u128(99),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in [
            "",
            "s1",
            "s1.x.y",
            "s2.1.00000000000000000000000000000063",
            "s1.1.abc.d",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sorts_parse_strictly() {
        assert_eq!(Sort::parse("").unwrap(), Sort::LastSeen);
        assert_eq!(Sort::parse("cost").unwrap(), Sort::Cost);
        assert!(Sort::parse("spend")
            .unwrap_err()
            .contains("last_seen or cost"));
    }
}
