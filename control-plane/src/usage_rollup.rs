//! Usage totals per 12-hour UTC bucket (migration 0013): appended per ingested batch, folded by
//! one job at a time, read by the leaderboard and harness usage.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::leaderboard::{bucket_of, HarnessTotals, ModelUse, UserTotals};

/// The advisory lock the folding job holds; a purge takes it to read day counts that the fold
/// must not move meanwhile.
pub const FOLD_LOCK: &str = "hashtext('weir.usage_rollup')";

/// One request's contribution, as ingest knows it.
#[derive(Debug, Clone)]
pub struct Usage<'a> {
    pub at: DateTime<Utc>,
    pub api_key_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    pub model_key: &'a str,
    pub harness_key: &'a str,
    pub harness_label: &'a str,
    pub cost_pusd: Option<i64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub exposed_tools: Option<u32>,
    pub invoked_tools: Option<u32>,
}

#[derive(Default)]
struct Sums {
    label: String,
    requests: i64,
    cost: i64,
    input: i64,
    output: i64,
    exposed_sum: i64,
    exposed_n: i64,
    invoked_sum: i64,
    invoked_n: i64,
}

type Key<'a> = (
    DateTime<Utc>,
    Option<Uuid>,
    Option<Uuid>,
    &'a str,
    &'a str,
    Option<Uuid>,
);

/// Appends a batch's totals (grouped in memory, so a batch is a few rows) to the pending table.
pub async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    usages: impl IntoIterator<Item = Usage<'_>>,
) -> Result<(), sqlx::Error> {
    let mut groups: HashMap<Key<'_>, Sums> = HashMap::new();
    for u in usages {
        let harness = if u.harness_key.is_empty() {
            "unknown"
        } else {
            u.harness_key
        };
        let s = groups
            .entry((
                bucket_of(u.at),
                u.user_id,
                u.team_id,
                u.model_key,
                harness,
                u.api_key_id,
            ))
            .or_default();
        if s.label.is_empty() {
            s.label = u.harness_label.replace('\0', "");
        }
        let sat = |v: Option<u64>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        s.requests += 1;
        s.cost = s.cost.saturating_add(u.cost_pusd.unwrap_or(0));
        s.input = s.input.saturating_add(sat(u.input_tokens));
        s.output = s.output.saturating_add(sat(u.output_tokens));
        if let Some(n) = u.exposed_tools {
            s.exposed_sum += i64::from(n);
            s.exposed_n += 1;
        }
        if let Some(n) = u.invoked_tools {
            s.invoked_sum += i64::from(n);
            s.invoked_n += 1;
        }
    }
    if groups.is_empty() {
        return Ok(());
    }
    let n = groups.len();
    let (mut bucket, mut user, mut team, mut model, mut harness, mut label, mut key) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut cols: [Vec<i64>; 8] = Default::default();
    for ((b, u, t, m, h, k), s) in groups {
        bucket.push(b);
        key.push(k);
        user.push(u);
        team.push(t);
        model.push(m.replace('\0', ""));
        harness.push(h.replace('\0', ""));
        label.push(s.label);
        for (c, v) in cols.iter_mut().zip([
            s.requests,
            s.cost,
            s.input,
            s.output,
            s.exposed_sum,
            s.exposed_n,
            s.invoked_sum,
            s.invoked_n,
        ]) {
            c.push(v);
        }
    }
    let [requests, cost, input, output, es, en, is, inn] = cols;
    sqlx::query(
        "INSERT INTO usage_rollup_pending
         SELECT * FROM UNNEST($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
            $6::text[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
            $12::bigint[], $13::bigint[], $14::bigint[], $15::uuid[])",
    )
    .bind(bucket)
    .bind(user)
    .bind(team)
    .bind(model)
    .bind(harness)
    .bind(label)
    .bind(requests)
    .bind(cost)
    .bind(input)
    .bind(output)
    .bind(es)
    .bind(en)
    .bind(is)
    .bind(inn)
    .bind(key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Moves pending totals into the rollups; returns how many pending rows it folded. Replicas
/// take turns (an advisory lock), so rollup rows are never contended.
pub async fn fold(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let got: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_xact_lock({FOLD_LOCK})"))
        .fetch_one(&mut *tx)
        .await?;
    if !got {
        return Ok(0);
    }
    let moved: i64 = sqlx::query_scalar(
        "WITH moved AS (DELETE FROM usage_rollup_pending RETURNING *),
         users AS (
             INSERT INTO usage_rollup_users
             SELECT bucket, user_id, team_id, sum(requests), sum(cost_pusd),
                    sum(input_tokens), sum(output_tokens), sum(exposed_tools_sum),
                    sum(exposed_tools_n), sum(invoked_tools_sum), sum(invoked_tools_n)
             FROM moved WHERE user_id IS NOT NULL
             GROUP BY bucket, user_id, team_id
             ON CONFLICT (bucket, user_id, team_id) DO UPDATE SET
                 requests = usage_rollup_users.requests + EXCLUDED.requests,
                 cost_pusd = usage_rollup_users.cost_pusd + EXCLUDED.cost_pusd,
                 input_tokens = usage_rollup_users.input_tokens + EXCLUDED.input_tokens,
                 output_tokens = usage_rollup_users.output_tokens + EXCLUDED.output_tokens,
                 exposed_tools_sum = usage_rollup_users.exposed_tools_sum + EXCLUDED.exposed_tools_sum,
                 exposed_tools_n = usage_rollup_users.exposed_tools_n + EXCLUDED.exposed_tools_n,
                 invoked_tools_sum = usage_rollup_users.invoked_tools_sum + EXCLUDED.invoked_tools_sum,
                 invoked_tools_n = usage_rollup_users.invoked_tools_n + EXCLUDED.invoked_tools_n
         ),
         user_models AS (
             INSERT INTO usage_rollup_user_models
             SELECT user_id, bucket, team_id, model_key, sum(requests), sum(cost_pusd)
             FROM moved WHERE user_id IS NOT NULL
             GROUP BY user_id, bucket, team_id, model_key
             ON CONFLICT (user_id, bucket, team_id, model_key) DO UPDATE SET
                 requests = usage_rollup_user_models.requests + EXCLUDED.requests,
                 cost_pusd = usage_rollup_user_models.cost_pusd + EXCLUDED.cost_pusd
         ),
         harnesses AS (
             INSERT INTO usage_rollup_harnesses
             SELECT bucket, harness_key, team_id, max(harness_label), sum(requests), sum(cost_pusd)
             FROM moved GROUP BY bucket, harness_key, team_id
             ON CONFLICT (bucket, harness_key, team_id) DO UPDATE SET
                 harness_label = CASE WHEN EXCLUDED.harness_label = ''
                                      THEN usage_rollup_harnesses.harness_label
                                      ELSE EXCLUDED.harness_label END,
                 requests = usage_rollup_harnesses.requests + EXCLUDED.requests,
                 cost_pusd = usage_rollup_harnesses.cost_pusd + EXCLUDED.cost_pusd
         ),
         spend AS (
             INSERT INTO usage_rollup_spend (kind, subject, bucket, cost_pusd)
             SELECT s.kind, s.subject, m.bucket, sum(m.cost_pusd)
             FROM moved m
             CROSS JOIN LATERAL (VALUES ('key', m.api_key_id), ('user', m.user_id),
                                        ('team', m.team_id)) AS s (kind, subject)
             WHERE s.subject IS NOT NULL
             GROUP BY 1, 2, 3
             ON CONFLICT (kind, subject, bucket) DO UPDATE SET
                 cost_pusd = usage_rollup_spend.cost_pusd + EXCLUDED.cost_pusd
         )
         SELECT count(*) FROM moved",
    )
    .fetch_one(&mut *tx)
    .await?;
    // The request-log day counts (see `purge`) ride on the same job and lock.
    sqlx::query(
        "WITH moved AS (DELETE FROM request_log_day_counts_pending RETURNING *)
         INSERT INTO request_log_day_counts (day, logs, payloads, tags, attempts)
         SELECT day, sum(logs), sum(payloads), sum(tags), sum(attempts) FROM moved GROUP BY day
         ON CONFLICT (day) DO UPDATE SET
             logs = request_log_day_counts.logs + EXCLUDED.logs,
             payloads = request_log_day_counts.payloads + EXCLUDED.payloads,
             tags = request_log_day_counts.tags + EXCLUDED.tags,
             attempts = request_log_day_counts.attempts + EXCLUDED.attempts",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(moved as u64)
}

/// Folds every couple of seconds, for as long as the task runs.
pub async fn keep_folding(pool: PgPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = fold(&pool).await {
            tracing::warn!(error = %e, "folding usage rollups failed; pending totals stay readable");
        }
    }
}

/// Per-user totals from `since` on (optionally one team's).
pub async fn user_totals(
    pool: &PgPool,
    since: DateTime<Utc>,
    team: Option<Uuid>,
) -> Result<Vec<UserTotals>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, sum(requests)::bigint AS requests,
                sum(cost_pusd)::bigint AS cost, sum(input_tokens)::bigint AS input,
                sum(output_tokens)::bigint AS output, sum(exposed_tools_sum)::bigint AS es,
                sum(exposed_tools_n)::bigint AS en, sum(invoked_tools_sum)::bigint AS isum,
                sum(invoked_tools_n)::bigint AS inn
         FROM (
             SELECT user_id, requests, cost_pusd, input_tokens, output_tokens,
                    exposed_tools_sum, exposed_tools_n, invoked_tools_sum, invoked_tools_n
             FROM usage_rollup_users
             WHERE bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
             UNION ALL
             SELECT user_id, requests, cost_pusd, input_tokens, output_tokens,
                    exposed_tools_sum, exposed_tools_n, invoked_tools_sum, invoked_tools_n
             FROM usage_rollup_pending
             WHERE user_id IS NOT NULL AND bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
         ) r
         GROUP BY user_id",
    )
    .bind(since)
    .bind(team)
    .fetch_all(pool)
    .await?;
    let u = |r: &sqlx::postgres::PgRow, c: &str| r.get::<i64, _>(c).max(0) as u64;
    Ok(rows
        .iter()
        .map(|r| UserTotals {
            user_id: r.get("user_id"),
            requests: u(r, "requests"),
            cost_pusd: r.get("cost"),
            input_tokens: u(r, "input"),
            output_tokens: u(r, "output"),
            exposed_sum: u(r, "es"),
            exposed_n: u(r, "en"),
            invoked_sum: u(r, "isum"),
            invoked_n: u(r, "inn"),
        })
        .collect())
}

/// Requests and spend per model of each of `users` from `since` on.
pub async fn user_models(
    pool: &PgPool,
    since: DateTime<Utc>,
    team: Option<Uuid>,
    users: &[Uuid],
) -> Result<HashMap<Uuid, Vec<ModelUse>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, model_key, sum(requests)::bigint AS requests, sum(cost_pusd)::bigint AS cost
         FROM (
             SELECT user_id, model_key, requests, cost_pusd FROM usage_rollup_user_models
             WHERE user_id = ANY($3) AND bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
             UNION ALL
             SELECT user_id, model_key, requests, cost_pusd FROM usage_rollup_pending
             WHERE user_id = ANY($3) AND bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
         ) r
         GROUP BY user_id, model_key",
    )
    .bind(since)
    .bind(team)
    .bind(users)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<Uuid, Vec<ModelUse>> = HashMap::new();
    for r in rows {
        out.entry(r.get("user_id")).or_default().push(ModelUse {
            model_key: r.get("model_key"),
            requests: r.get::<i64, _>("requests").max(0) as u64,
            cost_pusd: r.get("cost"),
        });
    }
    Ok(out)
}

/// Spend and requests per bucket of each of `users` from `since` on.
pub async fn user_buckets(
    pool: &PgPool,
    since: DateTime<Utc>,
    team: Option<Uuid>,
    users: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(DateTime<Utc>, i64, u64)>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, bucket, sum(cost_pusd)::bigint AS cost, sum(requests)::bigint AS requests
         FROM (
             SELECT user_id, bucket, cost_pusd, requests FROM usage_rollup_users
             WHERE bucket >= $1 AND user_id = ANY($3) AND ($2::uuid IS NULL OR team_id = $2)
             UNION ALL
             SELECT user_id, bucket, cost_pusd, requests FROM usage_rollup_pending
             WHERE bucket >= $1 AND user_id = ANY($3) AND ($2::uuid IS NULL OR team_id = $2)
         ) r
         GROUP BY user_id, bucket",
    )
    .bind(since)
    .bind(team)
    .bind(users)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<Uuid, Vec<_>> = HashMap::new();
    for r in rows {
        out.entry(r.get("user_id")).or_default().push((
            r.get("bucket"),
            r.get("cost"),
            r.get::<i64, _>("requests").max(0) as u64,
        ));
    }
    Ok(out)
}

/// Per-harness totals from `since` on.
pub async fn harness_totals(
    pool: &PgPool,
    since: DateTime<Utc>,
    team: Option<Uuid>,
) -> Result<Vec<HarnessTotals>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT harness_key, max(harness_label) AS label, sum(requests)::bigint AS requests,
                sum(cost_pusd)::bigint AS cost
         FROM (
             SELECT harness_key, harness_label, requests, cost_pusd FROM usage_rollup_harnesses
             WHERE bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
             UNION ALL
             SELECT harness_key, harness_label, requests, cost_pusd FROM usage_rollup_pending
             WHERE bucket >= $1 AND ($2::uuid IS NULL OR team_id = $2)
         ) r
         GROUP BY harness_key",
    )
    .bind(since)
    .bind(team)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| HarnessTotals {
            key: r.get("harness_key"),
            label: r.get("label"),
            requests: r.get::<i64, _>("requests").max(0) as u64,
            cost_pusd: r.get("cost"),
        })
        .collect())
}

/// Requests and spend per bucket of each of `harnesses` from `since` on.
pub async fn harness_buckets(
    pool: &PgPool,
    since: DateTime<Utc>,
    team: Option<Uuid>,
    harnesses: &[String],
) -> Result<HashMap<String, Vec<(DateTime<Utc>, i64, u64)>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT harness_key, bucket, sum(cost_pusd)::bigint AS cost,
                sum(requests)::bigint AS requests
         FROM (
             SELECT harness_key, bucket, cost_pusd, requests FROM usage_rollup_harnesses
             WHERE bucket >= $1 AND harness_key = ANY($3) AND ($2::uuid IS NULL OR team_id = $2)
             UNION ALL
             SELECT harness_key, bucket, cost_pusd, requests FROM usage_rollup_pending
             WHERE bucket >= $1 AND harness_key = ANY($3) AND ($2::uuid IS NULL OR team_id = $2)
         ) r
         GROUP BY harness_key, bucket",
    )
    .bind(since)
    .bind(team)
    .bind(harnesses)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for r in rows {
        out.entry(r.get("harness_key")).or_default().push((
            r.get("bucket"),
            r.get("cost"),
            r.get::<i64, _>("requests").max(0) as u64,
        ));
    }
    Ok(out)
}
