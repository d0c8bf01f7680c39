//! Rate limits and budgets: refused before any upstream call, logged with their outcome.

use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e::{eventually, run, Stack};

async fn outcome(stack: &Stack, rid: &str) -> (i32, String) {
    eventually(Duration::from_secs(5), || async {
        sqlx::query_as::<_, (i32, String)>(
            "SELECT status_code, outcome FROM request_logs WHERE request_id = $1",
        )
        .bind(rid)
        .fetch_optional(&stack.control_plane.pool)
        .await
        .unwrap()
    })
    .await
    .unwrap_or_else(|| panic!("{rid} not logged"))
}

/// Prices `gpt` at $0.40 per output token (the mock answers with 5: $2 a request) and gives
/// user alice a daily budget of `usd` dollars, with weirctl.
async fn price_at_2_dollars_a_request_with_a_daily_budget(stack: &Stack, usd: &str) {
    let out = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "gpt",
        "--input-price",
        "0",
        "--output-price",
        "400000",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(stack.weirctl(&[
        "limits",
        "set",
        "--user",
        "alice",
        "--budget-usd",
        usd,
        "--period",
        "day",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
}

async fn wait_limits(
    stack: &Stack,
    subject_prefix: &str,
    check: impl Fn(&weir_data_plane::limits::SubjectLimits) -> bool,
) {
    let cfg = stack.data_plane.config.clone();
    let ok = eventually(Duration::from_secs(15), || {
        let cfg = cfg.clone();
        let found = cfg
            .current
            .load()
            .limits
            .iter()
            .any(|(s, l)| s.starts_with(subject_prefix) && check(l));
        async move { found.then_some(()) }
    })
    .await;
    assert!(
        ok.is_some(),
        "limits for {subject_prefix} never reached the data plane"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_minute_and_budgets_refuse_before_the_upstream() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());
    let send = |rid: String| {
        client
            .post(&url)
            .bearer_auth(&key)
            .header("x-request-id", rid)
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "one two three"}]}))
            .send()
    };

    let prefix = &key[..16];
    let out = run(stack.weirctl(&["limits", "set", "--key", prefix, "--rpm", "2"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_limits(&stack, "key:", |l| l.requests_per_minute == Some(2)).await;
    let before = stack.upstream.observed.count();
    assert_eq!(send("rl-1".into()).await.unwrap().status(), 200);
    assert_eq!(send("rl-2".into()).await.unwrap().status(), 200);
    let refused = send("rl-3".into()).await.unwrap();
    assert_eq!(refused.status(), 429);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded", "{v}");
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(
        stack.upstream.observed.count(),
        before + 2,
        "the refused request never left"
    );
    assert_eq!(outcome(&stack, "rl-3").await, (429, "rate_limited".into()));
    // Clearing the limit lets traffic through again.
    let out = run(stack.weirctl(&["limits", "set", "--key", prefix])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let empty = cfg.current.load().limits.is_empty();
        async move { empty.then_some(()) }
    })
    .await
    .expect("limit removed");
    assert_eq!(send("rl-4".into()).await.unwrap().status(), 200);

    // A $5 budget at $2 a request: the third request is refused; the node counts its own spend
    // until the fleet sum catches up.
    price_at_2_dollars_a_request_with_a_daily_budget(&stack, "5").await;
    wait_limits(&stack, "user:", |l| l.budget_pusd.is_some()).await;
    let cfg = stack.data_plane.config.clone();
    eventually(Duration::from_secs(10), || {
        let priced = cfg.current.load().prices.contains_key("gpt");
        async move { priced.then_some(()) }
    })
    .await
    .expect("price reached the node");
    // Each answer has 5 output tokens: 5 × $0.40 = $2 a request, so the third is refused.
    let mut statuses = Vec::new();
    let counters = stack.data_plane.logs.counters().clone();
    for i in 0..4 {
        let before = counters.acked.load(std::sync::atomic::Ordering::Relaxed);
        let s = send(format!("bud-{i}")).await.unwrap().status().as_u16();
        statuses.push(s);
        // The worker counts the spend when it builds the log record, before shipping it: once
        // the record is acked, the spend is counted.
        let c = counters.clone();
        eventually(Duration::from_secs(10), || {
            let c = c.clone();
            async move { (c.acked.load(std::sync::atomic::Ordering::Relaxed) > before).then_some(()) }
        })
        .await
        .expect("the request was logged");
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "budget of $5 at $2 a request"
    );
    let (status, outcome_name) = outcome(&stack, "bud-3").await;
    assert_eq!((status, outcome_name.as_str()), (429, "budget_error"));
    let listed = run(stack.weirctl(&["limits", "list", "-o", "json"])).await;
    let v: Value = serde_json::from_str(&listed.stdout).unwrap();
    let alice = v
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "alice")
        .unwrap();
    assert_eq!(alice["budget_usd"], "5.00");
    let spent = eventually(Duration::from_secs(5), || async {
        let listed = run(stack.weirctl(&["limits", "list", "-o", "json"])).await;
        let v: Value = serde_json::from_str(&listed.stdout).ok()?;
        let alice = v.as_array()?.iter().find(|l| l["name"] == "alice")?.clone();
        (alice["spent_usd"] == "6.00").then_some(())
    })
    .await;
    assert!(spent.is_some(), "three $2 requests are in the ledger");
    stack.shutdown().await;
}

/// Three data planes share one user's budget under concurrent load. Each node has two workers
/// sending one request a second at most ($2 each), so per node r ≤ 2/s and f = 2; the fleet's
/// spend must stay within docs/limits.md's bound, budget + N × r × (P + M) × c + N × f × c =
/// $60 + 3 × 2 × 7 × $2 + 3 × 2 × $2 = $156, well under the $180 three nodes would spend
/// counting only their own spend. Every refused request is logged as a budget_error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_budget_within_the_documented_bound() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let dp2 = Stack::start_data_plane(&stack.control_plane, &stack.dataplane_token, "dp-2").await;
    let dp3 = Stack::start_data_plane(&stack.control_plane, &stack.dataplane_token, "dp-3").await;
    price_at_2_dollars_a_request_with_a_daily_budget(&stack, "60").await;
    for cfg in [
        stack.data_plane.config.clone(),
        dp2.config.clone(),
        dp3.config.clone(),
    ] {
        let ok = eventually(Duration::from_secs(15), || {
            let s = cfg.current.load();
            let ready = s.prices.contains_key("gpt")
                && s.limits
                    .iter()
                    .any(|(k, l)| k.starts_with("user:") && l.budget_pusd.is_some());
            async move { ready.then_some(()) }
        })
        .await;
        assert!(ok.is_some(), "price and budget never reached a node");
    }

    let addrs = [stack.data_plane.addr, dp2.addr, dp3.addr];
    let client = reqwest::Client::new();
    let mut workers = Vec::new();
    for (node, addr) in addrs.iter().enumerate() {
        for w in 0..2 {
            let (client, key, addr) = (client.clone(), key.clone(), *addr);
            workers.push(tokio::spawn(async move {
                // (request id, status)
                let mut sent: Vec<(String, u16)> = Vec::new();
                let mut refused_in_a_row = 0;
                for i in 0..40 {
                    let rid = format!("fb-{node}-{w}-{i}");
                    let status = client
                        .post(format!("http://{addr}/v1/chat/completions"))
                        .bearer_auth(&key)
                        .header("x-request-id", &rid)
                        .json(&json!({"model": "gpt",
                            "messages": [{"role": "user", "content": "one two three"}]}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    sent.push((rid, status));
                    refused_in_a_row = if status == 429 {
                        refused_in_a_row + 1
                    } else {
                        0
                    };
                    if refused_in_a_row == 3 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                sent
            }));
        }
    }
    let mut sent = Vec::new();
    for w in workers {
        sent.extend(w.await.unwrap());
    }
    assert!(
        sent.iter().all(|(_, s)| *s == 200 || *s == 429),
        "only answers and budget refusals: {sent:?}"
    );
    let refused: Vec<String> = sent
        .iter()
        .filter(|(_, s)| *s == 429)
        .map(|(r, _)| r.clone())
        .collect();
    let admitted = sent.len() - refused.len();
    assert!(!refused.is_empty(), "the budget was never reached");

    // Every request reaches Postgres, each refusal as a budget_error.
    let pool = stack.control_plane.pool.clone();
    let rids: Vec<String> = sent.iter().map(|(r, _)| r.clone()).collect();
    let logged = eventually(Duration::from_secs(15), || {
        let (pool, rids) = (pool.clone(), rids.clone());
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM request_logs WHERE request_id = ANY($1)")
                    .bind(&rids)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (n as usize == rids.len()).then_some(())
        }
    })
    .await;
    assert!(logged.is_some(), "not every request was logged");
    let budget_errors: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM request_logs
         WHERE request_id = ANY($1) AND outcome = 'budget_error' AND status_code = 429",
    )
    .bind(&refused)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(budget_errors as usize, refused.len());

    let spent: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(e.cost_pusd), 0)::bigint FROM usage_cost_events e
         JOIN request_logs l USING (log_id, created_at) WHERE l.request_id = ANY($1)",
    )
    .bind(&rids)
    .fetch_one(&pool)
    .await
    .unwrap();
    let dollars = |d: i64| d * weir_proto::pricing::PUSD_PER_USD;
    assert_eq!(
        spent,
        dollars(2) * admitted as i64,
        "$2 per admitted request"
    );
    assert!(spent >= dollars(60), "the budget was spent: {spent}");
    let (n, r, p_plus_m, c, f) = (3, 2, 7, 2, 2);
    let bound = dollars(60 + n * r * p_plus_m * c + n * f * c);
    assert!(
        spent <= bound,
        "fleet spend ${} is over budget + bound ${}",
        spent / weir_proto::pricing::PUSD_PER_USD,
        bound / weir_proto::pricing::PUSD_PER_USD
    );
    eprintln!(
        "three nodes, $60 budget: {admitted} admitted, {} refused, spent ${} (bound ${})",
        refused.len(),
        spent / weir_proto::pricing::PUSD_PER_USD,
        bound / weir_proto::pricing::PUSD_PER_USD
    );
    dp2.shutdown().await;
    dp3.shutdown().await;
    stack.shutdown().await;
}
