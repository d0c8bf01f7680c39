//! Log ingest against real Postgres: one transaction per batch, idempotent on the log id, every
//! table written, costs exact.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;
use weir_control_plane::database::{connect, MIGRATOR};
use weir_control_plane::log_ingest::LogWriter;
use weir_control_plane::partitions::Partitions;
use weir_proto::logs::{Attempt, Caller, RequestLog, Tag, Usage};

async fn pool() -> PgPool {
    let url = weir_e2e::fresh_database().await;
    let pool = connect(&url).await.expect("connect");
    MIGRATOR.run(&pool).await.expect("migrate");
    pool
}

fn record(request_id: &str, model: &str, input: u64, cached: u64, output: u64) -> RequestLog {
    RequestLog {
        log_id: Uuid::now_v7().as_bytes().to_vec(),
        request_id: request_id.into(),
        operation: "chat_completions".into(),
        stream: false,
        model_key: model.into(),
        provider_key: "mock".into(),
        upstream_model: "up".into(),
        status_code: 200,
        outcome: "success".into(),
        duration_us: 1500,
        ttfb_us: Some(900),
        usage: Some(Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cached_input_tokens: Some(cached),
            reasoning_tokens: None,
            total_tokens: Some(input + output),
            ..Default::default()
        }),
        caller: Some(Caller {
            api_key_id: Uuid::now_v7().to_string(),
            user_id: Uuid::now_v7().to_string(),
            ..Default::default()
        }),
        tags: vec![
            Tag {
                key: "service".into(),
                value: "billing".into(),
            },
            Tag {
                key: "env".into(),
                value: "prod".into(),
            },
        ],
        request_payload: br#"{"headers":{},"body":{"model":"m","note":"nul \u0000 inside"}}"#
            .to_vec(),
        response_payload: br#"{"body":{"ok":true}}"#.to_vec(),
        attempts: vec![Attempt {
            number: 1,
            provider_key: "mock".into(),
            upstream_model: "up".into(),
            status_code: 200,
            duration_us: 1000,
            produced_response: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_idempotent_on_the_log_id() {
    let pool = pool().await;
    let writer = LogWriter::new(pool.clone(), Arc::new(Partitions::default()));
    // Two logs sharing a request id are two logs.
    let batch = vec![record("same", "m", 10, 0, 5), record("same", "m", 10, 0, 5)];
    let first = writer.write(&batch).await.unwrap();
    assert_eq!(
        (first.inserted, first.duplicates, first.rejected),
        (2, 0, 0)
    );
    assert!(!first.deduplicated, "a new batch goes in by COPY");
    // The resend of a batch (lost ack) writes nothing twice.
    let again = writer.write(&batch).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 2));
    assert!(again.deduplicated);
    for (table, want) in [
        ("request_logs", 2),
        ("request_log_payloads", 2),
        ("request_log_tags", 4),
        // The only attempt of each produced the response: it rides on the summary row.
        ("request_log_attempts", 0),
        ("request_log_attempts_all", 2),
        ("usage_cost_events", 2),
    ] {
        assert_eq!(count(&pool, table).await, want, "{table}");
    }
    let service: String = sqlx::query_scalar("SELECT service FROM request_logs LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(service, "billing");
    // A NUL escape in a payload is made storable instead of failing the whole batch.
    let note: String =
        sqlx::query_scalar("SELECT request->'body'->>'note' FROM request_log_payloads LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(note, "nul \u{FFFD} inside");
    // Payloads are stored as the gateway wrote them (json, not jsonb's normalised form), with
    // lz4 on the day partitions where the server has it (migrations 0006 and 0018).
    let stored: Vec<String> = sqlx::query_scalar("SELECT response::text FROM request_log_payloads")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(stored, [r#"{"body":{"ok":true}}"#; 2]);
    let compression: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.relname::text, format_type(a.atttypid, a.atttypmod), a.attcompression::text
         FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname IN ('request', 'response')
         WHERE i.inhparent = 'request_log_payloads'::regclass",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!compression.is_empty(), "a day partition exists");
    for (partition, ty, method) in compression {
        assert_eq!(ty, "json", "{partition}");
        assert_eq!(method, "l", "{partition} compresses payloads with lz4");
    }
    // A record whose id is not a UUIDv7 can never be written: rejected, the rest still land.
    let mut bad = record("bad", "m", 1, 0, 1);
    bad.log_id = Uuid::new_v4().as_bytes().to_vec();
    let mixed = writer
        .write(&[bad, record("good", "m", 1, 0, 1)])
        .await
        .unwrap();
    assert_eq!((mixed.inserted, mixed.rejected), (1, 1));
}

/// $0.15 in, $0.075 cached, $0.60 out per MTok for `model`, valid from a minute ago.
async fn price(pool: &PgPool, model: &str) {
    sqlx::query(
        "INSERT INTO prices (model_key, input_pusd_per_token, cached_input_pusd_per_token,
                             output_pusd_per_token, valid_from)
         VALUES ($1, 150000, 75000, 600000, now() - interval '1 minute')",
    )
    .bind(model)
    .execute(pool)
    .await
    .unwrap();
}

/// Every column of a record's rows, without its id and time.
async fn stored_rows(pool: &PgPool, request_id: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for table in [
        "request_logs",
        "request_log_payloads",
        "request_log_tags",
        "request_log_attempts_all",
        "usage_cost_events",
    ] {
        let rows: Vec<serde_json::Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) - 'log_id' - 'created_at' FROM {table} t
             WHERE log_id IN (SELECT log_id FROM request_logs WHERE request_id = $1)
             ORDER BY 1::text"
        ))
        .bind(request_id)
        .fetch_all(pool)
        .await
        .unwrap();
        assert!(!rows.is_empty(), "{table} has rows for {request_id}");
        out.push(serde_json::json!({ table: rows }));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_path_and_the_dedupe_path_store_the_same_rows() {
    let pool = pool().await;
    price(&pool, "m").await;
    let writer = LogWriter::new(pool.clone(), Arc::new(Partitions::default()));
    // Every optional column set; text with tab, newline, backslash and NUL (Postgres text cannot
    // hold NUL).
    let full = |request_id: &str| {
        let mut r = record(request_id, "m", 1000, 400, 250);
        r.error_message = "tab\there\nnew line \\ back\0slash".into();
        r.stream = true;
        r.exposed_tool_count = Some(3);
        r.invoked_tool_count = Some(1);
        r.session_id = "s-1".into();
        r.session_source = "header".into();
        r.turn_kind = "user".into();
        r.request_payload_truncated = true;
        r.node_id = "node\t1".into();
        r.caller.as_mut().unwrap().team_id = Uuid::nil().to_string();
        r.caller.as_mut().unwrap().api_key_id = "11111111-1111-7111-8111-111111111111".into();
        r.caller.as_mut().unwrap().user_id = "22222222-2222-7222-8222-222222222222".into();
        r.tags.push(Tag {
            key: "component".into(),
            value: "x\0y".into(),
        });
        r.usage.as_mut().unwrap().estimated = true;
        r.harness = Some(weir_proto::logs::Harness {
            key: "claude_code".into(),
            label: "Claude Code".into(),
            version: "2.0.1".into(),
            user_agent: "claude-cli/2.0.1".into(),
        });
        r.policy = Some(weir_proto::logs::PolicyMeta {
            capture_mode: "redacted_payloads".into(),
            request_max_bytes: 65536,
            response_max_bytes: 65536,
            stream_max_events: 100,
            policy_version: "v3".into(),
        });
        r.attempts.insert(
            0,
            Attempt {
                number: 1,
                provider_key: "down".into(),
                upstream_model: "up".into(),
                status_code: 503,
                error_kind: "upstream_status".into(),
                error_message: "busy".into(),
                duration_us: 10,
                ttfb_us: Some(5),
                ..Default::default()
            },
        );
        r.attempts[1].number = 2;
        r
    };
    // The usual request: one attempt, carried on the summary row.
    let plain = |request_id: &str| {
        let mut r = record(request_id, "m", 10, 0, 5);
        r.attempts[0].ttfb_us = Some(400);
        r.caller.as_mut().unwrap().api_key_id = "11111111-1111-7111-8111-111111111111".into();
        r.caller.as_mut().unwrap().user_id = "22222222-2222-7222-8222-222222222222".into();
        r
    };
    let copied = [full("copied"), plain("copied-plain")];
    let out = writer.write(&copied).await.unwrap();
    assert!(!out.deduplicated);
    // A batch with one stored record goes in on the dedupe path, the new records included.
    let [c1, c2] = copied;
    let out = writer
        .write(&[c1, full("deduped"), c2, plain("deduped-plain")])
        .await
        .unwrap();
    assert!(out.deduplicated);
    assert_eq!((out.inserted, out.duplicates), (2, 2));
    for (a, b) in [("copied", "deduped"), ("copied-plain", "deduped-plain")] {
        let (a_rows, b_rows) = (stored_rows(&pool, a).await, stored_rows(&pool, b).await);
        assert_eq!(
            serde_json::to_string(&a_rows).unwrap(),
            serde_json::to_string(&b_rows).unwrap().replace(b, a)
        );
    }
    // The plain request's attempt is read back whole, and only the fallback's are stored.
    let plain_attempt: serde_json::Value = sqlx::query_scalar(
        "SELECT to_jsonb(a) - 'log_id' - 'created_at' FROM request_log_attempts_all a
         JOIN request_logs l USING (log_id, created_at) WHERE l.request_id = 'deduped-plain'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        plain_attempt,
        serde_json::json!({"attempt_no": 1, "provider_key": "mock", "upstream_model": "up",
            "status_code": 200, "error_kind": "", "error_message": "", "duration_us": 1000,
            "ttfb_us": 400, "produced_response": true})
    );
    assert_eq!(count(&pool, "request_log_attempts").await, 4);
    let a = stored_rows(&pool, "copied").await;
    let a_text = serde_json::to_string(&a).unwrap();
    assert!(
        a_text.contains("\"error_message\":\"tab\\there\\nnew line \\\\ back\u{FFFD}slash\""),
        "{a_text}"
    );
    assert!(
        a_text.contains(r#""harness_key":"claude_code""#),
        "{a_text}"
    );
    assert!(
        a_text.contains(r#""pricing_status":"estimated""#),
        "{a_text}"
    );
    assert!(
        a_text.contains(r#""usage_extra":{"estimated":true}"#),
        "{a_text}"
    );
    assert!(a_text.contains(r#""cost_pusd":270000000"#), "{a_text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_prices_exactly_and_never_silently_free() {
    let pool = pool().await;
    let writer = LogWriter::new(pool.clone(), Arc::new(Partitions::default()));
    // No price yet: unpriced, never $0.
    let unpriced = record("u", "gpt-4o-mini", 1000, 400, 250);
    let mut missing = record("m", "gpt-4o-mini", 0, 0, 0);
    missing.usage = None;
    let mut no_attempt = record("n", "gpt-4o-mini", 1, 0, 1);
    no_attempt.attempts.clear();
    writer
        .write(&[unpriced, missing, no_attempt])
        .await
        .unwrap();
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT l.request_id, e.pricing_status, e.cost_pusd FROM usage_cost_events e
         JOIN request_logs l USING (log_id) ORDER BY l.request_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("m".to_string(), "usage_missing".to_string(), None),
            ("u".to_string(), "unpriced".to_string(), None),
        ],
        "a request with no upstream attempt has no ledger row"
    );
    price(&pool, "gpt-4o-mini").await;
    writer
        .write(&[record("p", "gpt-4o-mini", 1000, 400, 250)])
        .await
        .unwrap();
    let (status, cost, price_id): (String, Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT e.pricing_status, e.cost_pusd, e.price_id FROM usage_cost_events e
         JOIN request_logs l USING (log_id) WHERE l.request_id = 'p'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(status, "priced");
    // 600 × 0.15 + 400 × 0.075 + 250 × 0.60 micro-dollars = 270 µ$ = 270,000,000 p$.
    assert_eq!(cost, Some(270_000_000));
    assert!(price_id.is_some());
    let summary_cost: Option<i64> =
        sqlx::query_scalar("SELECT cost_pusd FROM request_logs WHERE request_id = 'p'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(summary_cost, Some(270_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_logs_live_in_daily_partitions() {
    let pool = pool().await;
    let writer = LogWriter::new(pool.clone(), Arc::new(Partitions::default()));
    // A record from a node whose clock is 40 days behind still lands, in its own day.
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        old.timestamp() as u64,
        old.timestamp_subsec_nanos(),
    );
    let mut rec = record("old", "m", 1, 0, 1);
    rec.log_id = Uuid::new_v7(ts).as_bytes().to_vec();
    writer
        .write(&[rec, record("now", "m", 1, 0, 1)])
        .await
        .unwrap();
    let parts: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'request_logs'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let old_name = format!("request_logs_p{}", old.format("%Y%m%d"));
    let today = format!("request_logs_p{}", chrono::Utc::now().format("%Y%m%d"));
    assert!(parts.contains(&old_name), "{parts:?}");
    assert!(parts.contains(&today), "{parts:?}");
    let in_old: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {old_name}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(in_old, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_newest_first_across_days_without_gaps() {
    let stack = weir_e2e::Stack::start().await;
    let writer = LogWriter::new(
        stack.control_plane.pool.clone(),
        Arc::new(Partitions::default()),
    );
    // Seven logs over two days: the keyset cursor must cross a partition boundary.
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let mut batch = Vec::new();
    for i in 0..7u64 {
        let ms = if i < 3 { now - 86_400_000 - i } else { now - i };
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            ((ms % 1000) * 1_000_000) as u32,
        );
        let mut r = record(&format!("page-{i}"), "m", 1, 0, 1);
        r.log_id = Uuid::new_v7(ts).as_bytes().to_vec();
        batch.push(r);
    }
    assert_eq!(writer.write(&batch).await.unwrap().inserted, 7);
    let mut want: Vec<String> = batch
        .iter()
        .map(|r| Uuid::from_slice(&r.log_id).unwrap().to_string())
        .collect();
    want.sort();
    want.reverse();

    let mut admin = stack.admin().await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = admin
            .list_request_logs(weir_proto::admin::ListRequestLogsRequest {
                limit: 3,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        pages += 1;
        seen.extend(page.logs.iter().map(|l| l.log_id.clone()));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
        assert!(pages < 10, "the cursor must advance");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, want, "newest first, every log once");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_filter_selects_exactly_its_rows() {
    let stack = weir_e2e::Stack::start().await;
    let writer = LogWriter::new(
        stack.control_plane.pool.clone(),
        Arc::new(Partitions::default()),
    );
    let team_a = Uuid::now_v7().to_string();
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let at = |ms: u64| {
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            ms / 1000,
            ((ms % 1000) * 1_000_000) as u32,
        );
        Uuid::new_v7(ts).as_bytes().to_vec()
    };
    // (request id, provider, team a?, harness, operation, status, minutes ago)
    let rows = [
        (
            "f-1",
            "openai",
            true,
            "claude_code",
            "chat_completions",
            200,
            1,
        ),
        ("f-2", "anthropic", true, "codex", "messages", 200, 2),
        ("f-3", "openai", false, "unknown", "embeddings", 502, 3),
        ("f-4", "openai", false, "codex", "responses", 200, 90),
    ];
    let mut batch = Vec::new();
    for (rid, provider, in_a, harness, op, status, ago) in rows {
        let mut r = record(rid, "m", 1, 0, 1);
        r.log_id = at(now - ago * 60_000);
        r.provider_key = provider.into();
        r.operation = op.into();
        r.status_code = status;
        r.harness = Some(weir_proto::logs::Harness {
            key: harness.into(),
            ..Default::default()
        });
        if in_a {
            r.caller.as_mut().unwrap().team_id = team_a.clone();
        }
        batch.push(r);
    }
    assert_eq!(writer.write(&batch).await.unwrap().inserted, 4);
    let since = (chrono::Utc::now() - chrono::Duration::minutes(30)).to_rfc3339();
    let until = (chrono::Utc::now() - chrono::Duration::seconds(150)).to_rfc3339();
    let mut admin = stack.admin().await;
    use weir_proto::admin::ListRequestLogsRequest as L;
    let cases: Vec<(L, Vec<&str>)> = vec![
        (
            L {
                provider_key: "openai".into(),
                ..Default::default()
            },
            vec!["f-1", "f-3", "f-4"],
        ),
        (
            L {
                team_id: team_a.clone(),
                ..Default::default()
            },
            vec!["f-1", "f-2"],
        ),
        (
            L {
                harness: "codex".into(),
                ..Default::default()
            },
            vec!["f-2", "f-4"],
        ),
        (
            L {
                operation: "embeddings".into(),
                ..Default::default()
            },
            vec!["f-3"],
        ),
        (
            L {
                status_code: 502,
                ..Default::default()
            },
            vec!["f-3"],
        ),
        (
            L {
                since: since.clone(),
                ..Default::default()
            },
            vec!["f-1", "f-2", "f-3"],
        ),
        (
            L {
                since: since.clone(),
                until: until.clone(),
                ..Default::default()
            },
            vec!["f-3"],
        ),
        (
            L {
                provider_key: "openai".into(),
                harness: "codex".into(),
                ..Default::default()
            },
            vec!["f-4"],
        ),
    ];
    for (filter, want) in cases {
        let got: Vec<String> = admin
            .list_request_logs(filter.clone())
            .await
            .expect("list")
            .into_inner()
            .logs
            .into_iter()
            .map(|l| l.request_id)
            .collect();
        assert_eq!(got, want, "{filter:?}");
    }
    // Malformed filters are refused by name.
    for (filter, says) in [
        (
            L {
                since: "yesterday".into(),
                ..Default::default()
            },
            "since",
        ),
        (
            L {
                team_id: "not-a-uuid".into(),
                ..Default::default()
            },
            "team_id",
        ),
    ] {
        let err = admin.list_request_logs(filter).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(says), "{}", err.message());
    }
    stack.shutdown().await;
}
