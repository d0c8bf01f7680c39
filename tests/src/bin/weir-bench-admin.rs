//! `weir-bench-admin`: admin queries on a large request-log table.
//!
//! Generates (once; kept under `--dir` and reused while under a day old) a durable Postgres with
//! `--rows` request logs (default 10 million) spread evenly over the last `--days` (default 31): 2,000 users
//! in 40 teams with a skewed share of traffic, 20 models, 20 harnesses, 2 % 429s and 1 % 500s,
//! a bespoke tag and a ledger row per request, tool counts recorded on 40 % of requests, and 60 %
//! of requests in agent sessions (one per user and 3-hour window: 1 to ~2,000 turns). The usage
//! rollups are built from the generated rows with the same aggregation ingest appends per batch,
//! then folded. A control plane then serves the data, and every query goes through the admin
//! HTTP API (reqwest), timed end to end: 1 warm-up, then `--runs` timed runs (median and max).
//!
//! With `--purge` (and usually `--days 14`), it instead measures a purge of the logs older than
//! 7 days through the admin API while a node streams request logs into ingest, reporting the
//! purge's time and the longest wait of any ingest batch for its ack.
//!
//! Usage: weir-bench-admin [--rows N] [--days N] [--runs N] [--dir PATH] [--regenerate]
//!        [--purge [--retention 7d]] [--reuse (whatever the table holds)]

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const USERS: usize = 2000;
const TEAMS: usize = 40;
const HARNESSES: [(&str, &str); 20] = [
    ("claude_code", "Claude Code"),
    ("codex_cli", "Codex CLI"),
    ("openai_python", "OpenAI Python SDK"),
    ("cursor", "Cursor"),
    ("anthropic_python", "Anthropic Python SDK"),
    ("openai_node", "OpenAI Node SDK"),
    ("gemini_cli", "Gemini CLI"),
    ("cline", "Cline"),
    ("aider", "Aider"),
    ("langchain", "LangChain"),
    ("opencode", "OpenCode"),
    ("roo_code", "Roo Code"),
    ("continue", "Continue"),
    ("github_copilot", "GitHub Copilot"),
    ("vercel_ai_sdk", "Vercel AI SDK"),
    ("zed", "Zed"),
    ("goose", "Goose"),
    ("kilo_code", "Kilo Code"),
    ("litellm", "LiteLLM"),
    ("curl", "curl"),
];

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,weir_control_plane::purge=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rows: i64 = arg("--rows").map_or(Ok(10_000_000), |v| v.parse())?;
    let runs: usize = arg("--runs").map_or(Ok(5), |v| v.parse())?;
    let days: i64 = arg("--days").map_or(Ok(31), |v| v.parse())?;
    let dir = match arg("--dir") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var("HOME").context("HOME")?)
            .join(".cache/weir-bench-admin"),
    };
    std::fs::create_dir_all(&dir)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let token = format!("t{}", Uuid::new_v4().simple());
    let cp = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: None,
        data_dir: dir.clone(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: Some(token.clone()),
        dataplane_token: token.clone(),
        replica_id: "bench".into(),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await?;
    let pool = cp.pool.clone();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_meta (rows bigint NOT NULL, generated_at timestamptz NOT NULL)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("ALTER TABLE bench_meta ADD COLUMN IF NOT EXISTS days bigint NOT NULL DEFAULT 31")
        .execute(&pool)
        .await?;
    let meta: Option<(i64, i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT rows, days, generated_at FROM bench_meta")
            .fetch_optional(&pool)
            .await?;
    let fresh = flag("--reuse")
        || meta.is_some_and(|(r, d, at)| {
            r == rows
                && d == days
                && Utc::now() - at < chrono::Duration::hours(24)
                && !flag("--regenerate")
        });
    if fresh {
        eprintln!("reusing the generated table in {}", dir.display());
    } else {
        generate(&pool, rows, days).await?;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&pool)
        .await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&pool)
            .await?;
    eprintln!("{total} request logs, database {size}");

    if flag("--purge") {
        purge_under_ingest(&cp, &token).await?;
        cp.shutdown().await;
        return Ok(());
    }
    let base = format!("http://{}/api/v1/admin", cp.http_addr);
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = format!("{base}{path}");
        let token = token.clone();
        async move {
            let started = Instant::now();
            let resp = client.get(&url).bearer_auth(&token).send().await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            anyhow::ensure!(status.is_success(), "{url}: {status} {body}");
            anyhow::Ok((started.elapsed(), body))
        }
    };

    // A user in the middle of the ranking, a model and a harness, for filters.
    let mid_user: Uuid =
        sqlx::query_scalar("SELECT id FROM users ORDER BY name OFFSET 300 LIMIT 1")
            .fetch_one(&pool)
            .await?;
    // The session with the most turns, for the detail query.
    let (big_sid, big_owner, big_turns): (String, Uuid, i64) = sqlx::query_as(
        "SELECT session_id, user_id, count(*) FROM request_logs
         WHERE session_id LIKE 's0-%' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    eprintln!("largest session: {big_sid} with {big_turns} turns");
    let biggest_session = format!("{big_owner}%3A{big_sid}");
    let now = Utc::now();
    let day = |d: i64| {
        (now - chrono::Duration::days(d))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let queries: Vec<(&str, String)> =
        vec![
        (
            "leaderboard, 31 days",
            "/observability/leaderboard?range=31d".into(),
        ),
        (
            "leaderboard, 7 days",
            "/observability/leaderboard?range=7d".into(),
        ),
        (
            "harness usage, 31 days",
            "/observability/harness-usage?range=31d".into(),
        ),
        (
            "harness usage, 7 days",
            "/observability/harness-usage?range=7d".into(),
        ),
        (
            "list, page 1 (50 rows)",
            "/observability/request-logs?limit=50".into(),
        ),
        (
            "list: model + status 429",
            "/observability/request-logs?model_key=model-03&status_code=429&limit=50".into(),
        ),
        (
            "list: one user",
            format!("/observability/request-logs?user_id={mid_user}&limit=50"),
        ),
        (
            "list: tag key + value",
            "/observability/request-logs?tag_key=ticket&tag_value=t-1234&limit=50".into(),
        ),
        (
            "list: harness in a one-day window",
            format!(
                "/observability/request-logs?harness=aider&since={}&until={}&limit=50",
                day(10),
                day(9)
            ),
        ),
        (
            "list: service + env + operation",
            "/observability/request-logs?service=svc-7&env=staging&operation=embeddings&limit=50"
                .into(),
        ),
        (
            "spend by user, 31 days (ledger)",
            format!("/observability/spend?group_by=user&since={}", day(31)),
        ),
        ("sessions, 31 days, newest first", "/observability/sessions?limit=50".into()),
        (
            "sessions of one user, 31 days",
            format!("/observability/sessions?user_id={mid_user}&limit=50"),
        ),
        (
            "sessions, 7 days, by cost",
            format!("/observability/sessions?sort=cost&since={}&limit=50", day(7)),
        ),
        (
            "session detail, the largest session",
            format!("/observability/sessions/{biggest_session}"),
        ),
    ];
    let mut report = Vec::new();
    for (name, path) in &queries {
        let (_, body) = get(path.clone()).await?;
        let n = body["rows"]
            .as_array()
            .or(body["logs"].as_array())
            .or(body["sessions"].as_array())
            .or(body["turns"].as_array())
            .map_or(0, Vec::len);
        let mut times = Vec::new();
        for _ in 0..runs {
            times.push(get(path.clone()).await?.0);
        }
        report.push((name.to_string(), times, n));
    }
    // Page 1,000: follow the cursor, as a client paging through would.
    for (name, filter) in [
        ("list, page 1,000 (50 rows a page)", ""),
        ("list: model, page 1,000", "&model_key=model-00"),
    ] {
        let mut cursor = String::new();
        let mut page_1000_cursor = String::new();
        let mut pages = Vec::new();
        let mut n = 0;
        for _ in 0..1000 {
            page_1000_cursor = cursor.clone();
            let (t, body) = get(format!(
                "/observability/request-logs?limit=50{filter}&cursor={cursor}"
            ))
            .await?;
            pages.push(t);
            n = body["logs"].as_array().map_or(0, Vec::len);
            cursor = body["next_cursor"].as_str().unwrap_or("").to_string();
            if cursor.is_empty() {
                // A small table (--rows): the last page stands in for page 1,000.
                eprintln!("{name}: only {} pages", pages.len());
                break;
            }
        }
        let mut sorted = pages.clone();
        sorted.sort();
        eprintln!(
            "{name}: all 1,000 pages median {:.1} ms, max {:.1} ms",
            ms(sorted[sorted.len() / 2]),
            ms(sorted[sorted.len() - 1])
        );
        // Page 1,000 again, timed on its own, with the cursor page 999 returned.
        let mut times = Vec::new();
        for _ in 0..runs {
            let path =
                format!("/observability/request-logs?limit=50{filter}&cursor={page_1000_cursor}");
            times.push(get(path).await?.0);
        }
        report.push((name.to_string(), times, n));
    }

    println!("| query | median | max | rows |");
    println!("|---|---|---|---|");
    for (name, mut times, n) in report {
        times.sort();
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {n} |",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1])
        );
    }
    cp.shutdown().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Purges logs older than 7 days through the admin API while one node streams batches of 100
/// request logs every 20 ms into ingest; reports the purge and the longest ack wait.
async fn purge_under_ingest(
    cp: &weir_control_plane::ControlPlane,
    token: &str,
) -> anyhow::Result<()> {
    use weir_proto::logs::log_ingest_client::LogIngestClient;
    use weir_proto::logs::{LogBatch, Tag};
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cp.grpc_addr))?
        .connect()
        .await?;
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client = LogIngestClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
        r.metadata_mut().insert("authorization", value.clone());
        Ok(r)
    });
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let sent: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<u64, Instant>>> =
        Default::default();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (sent, stop) = (sent.clone(), stop.clone());
        tokio::spawn(async move {
            let user = Uuid::new_v4();
            let mut seq = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                seq += 1;
                let records = (0..100)
                    .map(|i| {
                        let mut r = weir_e2e::record(Utc::now(), user, "model-00", 100 + i);
                        r.tags = vec![Tag {
                            key: "ticket".into(),
                            value: format!("t-{i}"),
                        }];
                        r.request_payload =
                            br#"{"body":{"messages":[{"role":"user","content":"hello"}]}}"#
                                .to_vec();
                        r
                    })
                    .collect();
                sent.lock().expect("sent").insert(seq, Instant::now());
                if tx
                    .send(LogBatch {
                        sequence: seq,
                        records,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
        })
    };
    let mut acks = client
        .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let waits = tokio::spawn({
        let sent = sent.clone();
        async move {
            let mut waits: Vec<(Instant, Duration)> = Vec::new();
            while let Ok(Some(a)) = acks.message().await {
                let now = Instant::now();
                let mut s = sent.lock().expect("sent");
                // An ack covers every earlier sequence.
                let done: Vec<u64> = s.keys().copied().filter(|k| *k <= a.sequence).collect();
                for k in done {
                    if let Some(t) = s.remove(&k) {
                        waits.push((now, now - t));
                    }
                }
            }
            waits
        }
    });
    // Old partitions in production were vacuumed days before their purge; here they were just
    // written, so let autovacuum finish with them first (and say how long that took).
    let settle = Instant::now();
    loop {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(&cp.pool)
        .await?;
        if busy == 0 || settle.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "autovacuum settled after {:.0} s",
        settle.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&cp.pool)
        .await?;
    let started = Instant::now();
    let purge_started = Instant::now();
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{}/api/v1/admin/purge", cp.http_addr))
        .bearer_auth(token)
        .json(&serde_json::json!({"retention": arg("--retention").unwrap_or_else(|| "7d".into())}))
        .send()
        .await?
        .json()
        .await?;
    let purge_took = started.elapsed();
    let purge_ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await?;
    drop(client);
    let waits = tokio::time::timeout(Duration::from_secs(10), waits).await??;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&cp.pool)
        .await?;
    let during: Vec<Duration> = waits
        .iter()
        .filter(|(at, w)| *at >= purge_started && *at - *w <= purge_ended)
        .map(|(_, w)| *w)
        .collect();
    let max_all = waits.iter().map(|(_, w)| *w).max().unwrap_or_default();
    let max_during = during.iter().max().copied().unwrap_or_default();
    println!(
        "purge (retention 7d) through the admin API: {:.0} ms end to end",
        ms(purge_took)
    );
    println!("  run record: {resp}");
    println!("  request logs before {before}, after {after} (ingest kept adding)");
    println!(
        "  ingest: {} batches of 100 acked; longest ack wait {:.0} ms overall, {:.0} ms for the {} batches in flight during the purge",
        waits.len(),
        ms(max_all),
        ms(max_during),
        during.len()
    );
    // The purge consumed the generated data: the next run regenerates.
    sqlx::query("DELETE FROM bench_meta")
        .execute(&cp.pool)
        .await?;
    Ok(())
}

async fn generate(pool: &sqlx::PgPool, rows: i64, days_back: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("generating {rows} request logs over {days_back} days (once; a few minutes)");
    for t in [
        "request_logs",
        "request_log_tags",
        "request_log_payloads",
        "request_log_attempts",
        "usage_cost_events",
        "usage_rollup_pending",
        "usage_rollup_users",
        "usage_rollup_user_models",
        "request_log_day_counts",
        "request_log_day_counts_pending",
        "usage_rollup_harnesses",
        "bench_meta",
    ] {
        sqlx::query(&format!("TRUNCATE {t}")).execute(pool).await?;
    }
    sqlx::query("DELETE FROM api_keys").execute(pool).await?;
    sqlx::query("DELETE FROM team_members")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM service_accounts")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM admin_tokens WHERE team_id IS NOT NULL")
        .execute(pool)
        .await?;
    sqlx::query("DELETE FROM users").execute(pool).await?;
    sqlx::query("DELETE FROM teams").execute(pool).await?;
    sqlx::query(&format!(
        "INSERT INTO teams (id, name) SELECT gen_random_uuid(), 'team-' || lpad(i::text, 2, '0')
         FROM generate_series(0, {}) i",
        TEAMS - 1
    ))
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO users (id, name, email) SELECT gen_random_uuid(), 'user-' || lpad(i::text, 4, '0'), ''
         FROM generate_series(0, {}) i",
        USERS - 1
    ))
    .execute(pool)
    .await?;
    let partitions = weir_control_plane::partitions::Partitions::default();
    let today = Utc::now().date_naive();
    let days: Vec<chrono::NaiveDate> = (0..=days_back)
        .map(|d| today - chrono::Duration::days(d))
        .collect();
    partitions.ensure(pool, &days).await?;

    let harness_keys: Vec<&str> = HARNESSES.iter().map(|h| h.0).collect();
    let harness_labels: Vec<&str> = HARNESSES.iter().map(|h| h.1).collect();
    let end_ms = Utc::now().timestamp_millis();
    let span_ms = days_back * 86_400_000;
    // In chunks of ~ a day, oldest first, so each chunk's keys append to the indexes.
    let chunks = days_back * 4;
    let per_chunk = rows / chunks;
    for c in 0..chunks {
        let n = if c == chunks - 1 {
            rows - per_chunk * (chunks - 1)
        } else {
            per_chunk
        };
        let from_ms = end_ms - span_ms + c * (span_ms / chunks);
        let step = (span_ms / chunks) as f64 / n as f64;
        let first = c * per_chunk;
        // One row per i: time increasing with i; user skewed (a few heavy users), team by user.
        sqlx::query(
            "WITH u AS (SELECT array_agg(id ORDER BY name) AS ids FROM users),
                  t AS (SELECT array_agg(id ORDER BY name) AS ids FROM teams),
             g AS (
                 SELECT i, ($2::bigint + floor(i * $3::float8))::bigint AS ms,
                        floor(2000 * power(random(), 3))::int AS ui,
                        floor(20 * power(random(), 2))::int AS mi,
                        floor(20 * power(random(), 2))::int AS hi,
                        random() AS r1, random() AS r2, random() AS r3, random() AS r4,
                        md5(($4::bigint + i)::text) AS h
                 FROM generate_series(0, $1::bigint - 1) i
             ),
             rows AS (
                 SELECT (substr(lpad(to_hex(ms), 12, '0'), 1, 8) || '-' || substr(lpad(to_hex(ms), 12, '0'), 9, 4)
                         || '-7' || substr(h, 1, 3) || '-8' || substr(h, 4, 3) || '-' || substr(h, 7, 12))::uuid AS log_id,
                        to_timestamp(ms / 1000.0) AS created_at, g.*,
                        (SELECT ids FROM u)[1 + ui] AS user_id,
                        (SELECT ids FROM t)[1 + ui % 40] AS team_id,
                        100 + floor(r2 * 4000)::bigint AS input_tokens,
                        10 + floor(r3 * 1000)::bigint AS output_tokens
                 FROM g
             ),
             logs AS (
                 INSERT INTO request_logs (log_id, created_at, request_id, operation, stream,
                     model_key, provider_key, upstream_model, status_code, outcome, duration_us,
                     ttfb_us, input_tokens, output_tokens, total_tokens, cost_pusd, pricing_status,
                     user_id, team_id, node_id, fleet_group, harness_key, harness_label, service,
                     env, exposed_tool_count, invoked_tool_count, attempt_count, policy,
                     session_id, session_source)
                 SELECT log_id, created_at, 'gen-' || ($4::bigint + i),
                        CASE WHEN r1 < 0.05 THEN 'embeddings' ELSE 'chat_completions' END,
                        r1 > 0.5, 'model-' || lpad(mi::text, 2, '0'), 'openai',
                        'model-' || lpad(mi::text, 2, '0'),
                        CASE WHEN r1 < 0.02 THEN 429 WHEN r1 < 0.03 THEN 500 ELSE 200 END,
                        CASE WHEN r1 < 0.03 THEN 'upstream_error' ELSE 'success' END,
                        200000 + floor(r2 * 2000000)::bigint, 100000, input_tokens, output_tokens,
                        input_tokens + output_tokens,
                        input_tokens * 150000 + output_tokens * 600000, 'priced',
                        user_id, team_id, 'node-' || (i % 8), 'default',
                        ($5::text[])[1 + hi], ($6::text[])[1 + hi],
                        'svc-' || (ui % 10), CASE WHEN r3 < 0.2 THEN 'staging' ELSE 'prod' END,
                        CASE WHEN r3 < 0.4 THEN floor(r2 * 30)::int END,
                        CASE WHEN r3 < 0.4 THEN floor(r1 * 5)::int END, 1, '{}'::jsonb,
                        CASE WHEN r4 < 0.6 THEN 's' || ui || '-' || (ms / 10800000) END,
                        CASE WHEN r4 < 0.6 THEN 'x-weir-session' END
                 FROM rows
                 RETURNING log_id, created_at, user_id, team_id, model_key, input_tokens,
                           output_tokens, cost_pusd
             ),
             tags AS (
                 INSERT INTO request_log_tags (log_id, created_at, key, value)
                 SELECT log_id, created_at, 'ticket', 't-' || (abs(hashtext(log_id::text)) % 5000)
                 FROM logs
             )
             INSERT INTO usage_cost_events (log_id, created_at, user_id, team_id, model_key,
                 provider_key, upstream_model, input_tokens, output_tokens, pricing_status, cost_pusd)
             SELECT log_id, created_at, user_id, team_id, model_key, 'openai', model_key,
                    input_tokens, output_tokens, 'priced', cost_pusd
             FROM logs",
        )
        .bind(n)
        .bind(from_ms)
        .bind(step)
        .bind(first)
        .bind(&harness_keys)
        .bind(&harness_labels)
        .execute(pool)
        .await
        .with_context(|| format!("generating chunk {c}"))?;
        if c % 8 == 7 {
            eprintln!(
                "  {} rows after {:.0} s",
                first + n,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // The rollups, from the generated rows, aggregated as migration 0013 backfills history.
    let mut conn = pool.acquire().await?;
    for sql in [
        "CREATE TEMPORARY TABLE rollup_backfill AS
         SELECT date_bin('12 hours', created_at, 'epoch') AS bucket, user_id, team_id, model_key,
                harness_key, max(harness_label) AS harness_label, count(*) AS requests,
                coalesce(sum(cost_pusd), 0) AS cost_pusd, coalesce(sum(input_tokens), 0) AS input_tokens,
                coalesce(sum(output_tokens), 0) AS output_tokens,
                coalesce(sum(exposed_tool_count), 0) AS es, count(exposed_tool_count) AS en,
                coalesce(sum(invoked_tool_count), 0) AS isum, count(invoked_tool_count) AS inn
         FROM request_logs GROUP BY 1, 2, 3, 4, 5",
        "INSERT INTO usage_rollup_users
         SELECT bucket, user_id, team_id, sum(requests), sum(cost_pusd), sum(input_tokens),
                sum(output_tokens), sum(es), sum(en), sum(isum), sum(inn)
         FROM rollup_backfill WHERE user_id IS NOT NULL GROUP BY bucket, user_id, team_id",
        "INSERT INTO usage_rollup_user_models
         SELECT user_id, bucket, team_id, model_key, sum(requests), sum(cost_pusd)
         FROM rollup_backfill WHERE user_id IS NOT NULL GROUP BY user_id, bucket, team_id, model_key",
        "INSERT INTO usage_rollup_harnesses
         SELECT bucket, harness_key, team_id, max(harness_label), sum(requests), sum(cost_pusd)
         FROM rollup_backfill GROUP BY bucket, harness_key, team_id",
        "DROP TABLE rollup_backfill",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    // The per-day row counts purges read, as ingest would have appended them.
    sqlx::query(
        "INSERT INTO request_log_day_counts_pending (day, logs, payloads, tags, attempts)
         SELECT day, sum(logs), 0, sum(tags), 0 FROM (
             SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS logs, 0 AS tags
             FROM request_logs GROUP BY 1
             UNION ALL
             SELECT (created_at AT TIME ZONE 'UTC')::date, 0, count(*) FROM request_log_tags GROUP BY 1
         ) c GROUP BY day",
    )
    .execute(pool)
    .await?;
    weir_control_plane::usage_rollup::fold(pool).await?;
    eprintln!("rollups built; vacuum analyze");
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    sqlx::query("INSERT INTO bench_meta (rows, generated_at, days) VALUES ($1, now(), $2)")
        .bind(rows)
        .bind(days_back)
        .execute(pool)
        .await?;
    eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
