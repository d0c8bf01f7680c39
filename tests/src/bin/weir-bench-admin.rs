//! `weir-bench-admin`: admin queries on a large request-log table.
//!
//! Generates (once; kept under `--dir` and reused while under a day old) a durable Postgres with
//! `--rows` request logs (default 10 million) spread evenly over the last 31 days: 2,000 users
//! in 40 teams with a skewed share of traffic, 20 models, 20 harnesses, 2 % 429s and 1 % 500s,
//! a bespoke tag and a ledger row per request, tool counts recorded on 40 % of requests. The usage
//! rollups are built from the generated rows with the same aggregation ingest appends per batch,
//! then folded. A control plane then serves the data, and every query goes through the admin
//! HTTP API (reqwest), timed end to end: 1 warm-up, then `--runs` timed runs (median and max).
//!
//! Usage: weir-bench-admin [--rows N] [--runs N] [--dir PATH] [--regenerate]

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const USERS: usize = 2000;
const TEAMS: usize = 40;
const DAYS: i64 = 31;
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
    let rows: i64 = arg("--rows").map_or(Ok(10_000_000), |v| v.parse())?;
    let runs: usize = arg("--runs").map_or(Ok(5), |v| v.parse())?;
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
    let meta: Option<(i64, DateTime<Utc>)> =
        sqlx::query_as("SELECT rows, generated_at FROM bench_meta")
            .fetch_optional(&pool)
            .await?;
    let fresh = meta.is_some_and(|(r, at)| {
        r == rows && Utc::now() - at < chrono::Duration::hours(24) && !flag("--regenerate")
    });
    if fresh {
        eprintln!("reusing the generated table in {}", dir.display());
    } else {
        generate(&pool, rows).await?;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM request_logs")
        .fetch_one(&pool)
        .await?;
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&pool)
            .await?;
    eprintln!("{total} request logs, database {size}");

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
    let now = Utc::now();
    let day = |d: i64| {
        (now - chrono::Duration::days(d))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let queries: Vec<(&str, String)> = vec![
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
    ];
    let mut report = Vec::new();
    for (name, path) in &queries {
        let (_, body) = get(path.clone()).await?;
        let n = body["rows"]
            .as_array()
            .or(body["logs"].as_array())
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

async fn generate(pool: &sqlx::PgPool, rows: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!("generating {rows} request logs over {DAYS} days (once; a few minutes)");
    for t in [
        "request_logs",
        "request_log_tags",
        "request_log_payloads",
        "request_log_attempts",
        "usage_cost_events",
        "usage_rollup_pending",
        "usage_rollup_users",
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
    let days: Vec<chrono::NaiveDate> = (0..=DAYS)
        .map(|d| today - chrono::Duration::days(d))
        .collect();
    partitions.ensure(pool, &days).await?;

    let harness_keys: Vec<&str> = HARNESSES.iter().map(|h| h.0).collect();
    let harness_labels: Vec<&str> = HARNESSES.iter().map(|h| h.1).collect();
    let end_ms = Utc::now().timestamp_millis();
    let span_ms = DAYS * 86_400_000;
    // In chunks of ~ a day, oldest first, so each chunk's keys append to the indexes.
    let chunks = DAYS * 4;
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
                        random() AS r1, random() AS r2, random() AS r3,
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
                     env, exposed_tool_count, invoked_tool_count, attempt_count, policy)
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
                        CASE WHEN r3 < 0.4 THEN floor(r1 * 5)::int END, 1, '{}'::jsonb
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
    // The rollups, from the generated rows: the aggregation ingest appends per batch.
    sqlx::query(
        "INSERT INTO usage_rollup_pending
         SELECT date_bin('12 hours', created_at, 'epoch'), user_id, team_id, model_key, harness_key,
                max(harness_label), count(*), coalesce(sum(cost_pusd), 0),
                coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
                coalesce(sum(exposed_tool_count), 0), count(exposed_tool_count),
                coalesce(sum(invoked_tool_count), 0), count(invoked_tool_count)
         FROM request_logs GROUP BY 1, 2, 3, 4, 5",
    )
    .execute(pool)
    .await?;
    let folded = weir_control_plane::usage_rollup::fold(pool).await?;
    eprintln!("folded {folded} rollup rows; vacuum analyze");
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    sqlx::query("INSERT INTO bench_meta VALUES ($1, now())")
        .bind(rows)
        .execute(pool)
        .await?;
    eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
