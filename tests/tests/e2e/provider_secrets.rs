//! Upstream secrets stored by the control plane: sealed in Postgres, sent only on the
//! authenticated config stream, used by the node, rotated and removed live, and never shown.

use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e::{eventually, run, run_with_stdin, Stack};

const FIRST: &str = "sk-stored-first-5c1d9e";
const SECOND: &str = "sk-stored-second-77ab02";

/// Sends chat requests until the upstream receives `want` as its authorization header.
async fn upstream_sees(stack: &Stack, key: &str, want: Option<&str>) -> bool {
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", stack.gateway_url());
    eventually(Duration::from_secs(10), || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .ok()?;
            assert_eq!(resp.status(), 200);
            let seen = stack.upstream.observed.last()?;
            let auth = seen
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            (auth.as_deref() == want.map(|s| format!("Bearer {s}")).as_deref()).then_some(())
        }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_secret_reaches_the_upstream_and_nowhere_else() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "up")]).await;
    assert!(upstream_sees(&stack, &key, None).await, "no secret yet");

    let set = run_with_stdin(
        stack.weirctl(&["providers", "set-secret", "--key", "mock", "-o", "json"]),
        &format!("{FIRST}\n"),
    )
    .await;
    assert_eq!(set.code, 0, "{}", set.stderr);
    assert!(!set.stdout.contains(FIRST), "{}", set.stdout);
    assert!(
        upstream_sees(&stack, &key, Some(FIRST)).await,
        "stored secret used"
    );

    // Rotation takes effect live; the list shows that a secret is stored, never the value.
    let rotated = run_with_stdin(
        stack.weirctl(&["providers", "set-secret", "--key", "mock"]),
        SECOND,
    )
    .await;
    assert_eq!(rotated.code, 0, "{}", rotated.stderr);
    assert!(upstream_sees(&stack, &key, Some(SECOND)).await, "rotated");
    let list = run(stack.weirctl(&["providers", "list", "-o", "json"])).await;
    let providers: Value = serde_json::from_str(&list.stdout).unwrap();
    let mock = providers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "mock")
        .unwrap();
    assert_eq!(mock["secret_stored"], true);
    let table = run(stack.weirctl(&["providers", "list"])).await;
    assert!(table.stdout.contains("stored (sealed)"), "{}", table.stdout);
    for out in [&list.stdout, &table.stdout] {
        assert!(!out.contains(FIRST) && !out.contains(SECOND), "{out}");
    }

    // Postgres holds neither secret in any readable form: not in providers (sealed bytes), not
    // in request logs or payloads.
    let pool = &stack.control_plane.pool;
    for table in [
        "providers",
        "request_logs",
        "request_log_payloads",
        "request_log_attempts",
    ] {
        let text: Option<String> =
            sqlx::query_scalar(&format!("SELECT string_agg(t::text, ' ') FROM {table} t"))
                .fetch_one(pool)
                .await
                .unwrap();
        let text = text.unwrap_or_default();
        for s in [FIRST, SECOND, "sk-stored"] {
            assert!(!text.contains(s), "{table} contains {s}");
        }
        // bytea prints as hex: look for the secret's hex too.
        let hex: String = SECOND.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex), "{table} holds the secret unsealed");
    }

    // Removing it: requests go out without credentials again.
    let cleared =
        run(stack.weirctl(&["providers", "set-secret", "--key", "mock", "--clear"])).await;
    assert_eq!(cleared.code, 0, "{}", cleared.stderr);
    assert!(upstream_sees(&stack, &key, None).await, "cleared");

    // Created with a stored secret; a secret from both stdin and an env var is refused; an
    // empty stdin is a usage error, not an empty secret.
    let created = run_with_stdin(
        stack.weirctl(&[
            "providers",
            "create",
            "--key",
            "vault",
            "--base-url",
            "https://api.example.com/v1",
            "--api-key-stdin",
            "-o",
            "json",
        ]),
        FIRST,
    )
    .await;
    assert_eq!(created.code, 0, "{}", created.stderr);
    let v: Value = serde_json::from_str(&created.stdout).unwrap();
    assert_eq!(v[0]["secret_stored"], true, "{v}");
    let both = run_with_stdin(
        stack.weirctl(&[
            "providers",
            "create",
            "--key",
            "both",
            "--base-url",
            "https://x.example/v1",
            "--api-key-stdin",
            "--api-key-env",
            "OPENAI_API_KEY",
        ]),
        FIRST,
    )
    .await;
    assert_eq!(both.code, 2, "{}", both.stderr);
    let empty = run_with_stdin(
        stack.weirctl(&["providers", "set-secret", "--key", "vault"]),
        "",
    )
    .await;
    assert_eq!(empty.code, 2, "{}", empty.stderr);
    assert!(
        empty.stderr.contains("no secret on standard input"),
        "{}",
        empty.stderr
    );
    let conflict = run_with_stdin(
        stack.weirctl(&[
            "providers",
            "create",
            "--key",
            "envp",
            "--base-url",
            "https://x.example/v1",
            "--api-key-env",
            "SOME_ENV",
        ]),
        "",
    )
    .await;
    assert_eq!(conflict.code, 0, "{}", conflict.stderr);
    let onto_env = run_with_stdin(
        stack.weirctl(&["providers", "set-secret", "--key", "envp"]),
        FIRST,
    )
    .await;
    assert_eq!(onto_env.code, 7, "{}", onto_env.stderr);
    assert!(!onto_env.stderr.contains(FIRST), "{}", onto_env.stderr);
    stack.shutdown().await;
}
