//! The admin API and the node streams refuse the unauthenticated; weirctl reports failures with
//! exit codes scripts can rely on.

use std::time::Duration;

use weir_e2e::{bin, run, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_a_valid_token_and_errors_have_exit_codes() {
    let stack = Stack::start().await;

    let mut no_token = stack.weirctl(&["users", "list"]);
    no_token.env_remove("WEIR_ADMIN_TOKEN");
    let out = run(no_token).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("WEIR_ADMIN_TOKEN"), "{}", out.stderr);

    let mut wrong = stack.weirctl(&["users", "list"]);
    wrong.env("WEIR_ADMIN_TOKEN", "not-the-token");
    let out = run(wrong).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("admin token"), "{}", out.stderr);

    let mut unreachable = stack.weirctl(&["users", "list"]);
    unreachable.env("WEIR_CONTROL_PLANE", "http://127.0.0.1:1");
    let out = run(unreachable).await;
    assert_eq!(out.code, 6, "{}", out.stderr);

    let out = run(stack.weirctl(&["models", "create", "--key", "m", "--target", "nocolon"])).await;
    assert_eq!(out.code, 2, "clap usage error: {}", out.stderr);

    let base = stack.upstream.base_url();
    let create = ["providers", "create", "--key", "p1", "--base-url", &base];
    assert_eq!(run(stack.weirctl(&create)).await.code, 0);
    let dup = run(stack.weirctl(&create)).await;
    assert_eq!(dup.code, 4, "{}", dup.stderr);
    assert!(dup.stderr.contains("already exists"), "{}", dup.stderr);

    let bad = run(stack.weirctl(&[
        "providers",
        "create",
        "--key",
        "p2",
        "--kind",
        "bedrock",
        "--base-url",
        &base,
    ]))
    .await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);
    assert!(bad.stderr.contains("bedrock"), "{}", bad.stderr);
    let secret_as_env = run(stack.weirctl(&[
        "providers",
        "create",
        "--key",
        "p3",
        "--base-url",
        &base,
        "--api-key-env",
        "sk-live-abc",
    ]))
    .await;
    assert_eq!(secret_as_env.code, 7, "{}", secret_as_env.stderr);

    let unknown_provider =
        run(stack.weirctl(&["models", "create", "--key", "m", "--target", "ghost:gpt"])).await;
    assert_eq!(unknown_provider.code, 7, "{}", unknown_provider.stderr);
    assert!(
        unknown_provider.stderr.contains("ghost"),
        "{}",
        unknown_provider.stderr
    );

    let missing = run(stack.weirctl(&["logs", "show", "no-such-request"])).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    let missing_key = run(stack.weirctl(&["keys", "revoke", "weir_sk_nothere"])).await;
    assert_eq!(missing_key.code, 3, "{}", missing_key.stderr);
    let no_user = run(stack.weirctl(&["keys", "create", "--user", "ghost", "--name", "k"])).await;
    assert_eq!(no_user.code, 3, "{}", no_user.stderr);

    // Prices parse exactly or are refused.
    let price = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "m",
        "--input-price",
        "0.15",
        "--output-price",
        "0.6",
        "-o",
        "json",
    ]))
    .await;
    assert_eq!(price.code, 0, "{}", price.stderr);
    let v: serde_json::Value = serde_json::from_str(&price.stdout).unwrap();
    assert_eq!(v["input_per_mtok"], "0.15");
    assert_eq!(v["cached_input_per_mtok"], "0.15");
    assert_eq!(v["output_per_mtok"], "0.60");
    let bad_price = run(stack.weirctl(&[
        "models",
        "price",
        "--model",
        "m",
        "--input-price",
        "1e3",
        "--output-price",
        "1",
    ]))
    .await;
    assert_eq!(bad_price.code, 7, "{}", bad_price.stderr);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_token_gets_no_config() {
    let stack = Stack::start().await;
    stack.seed(&[("gpt-mock", "mock-model")]).await;
    let mut s = weir_data_plane::Settings::new(stack.control_plane_url(), "wrong-token");
    s.listen = ([127, 0, 0, 1], 0).into();
    s.node_id = "intruder".into();
    let dp = weir_data_plane::DataPlane::start(s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!dp.is_ready(), "an unauthenticated node received config");
    assert!(dp.config.current.load().keys.is_empty());
    let known: Vec<String> = sqlx::query_scalar("SELECT node_id FROM dataplanes ORDER BY 1")
        .fetch_all(&stack.control_plane.pool)
        .await
        .unwrap();
    assert_eq!(known, vec!["test-dp".to_string()]);
    dp.shutdown().await;
    // The binaries exist for the CLI and quickstart tests.
    assert!(bin("weir-control-plane").exists());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weirctl_prints_shell_completions_without_a_control_plane() {
    for shell in ["bash", "zsh", "fish"] {
        let mut c = std::process::Command::new(weir_e2e::bin("weirctl"));
        c.args(["completions", shell])
            .env_remove("WEIR_ADMIN_TOKEN")
            .env("WEIR_CONTROL_PLANE", "http://127.0.0.1:1");
        let out = weir_e2e::run(c).await;
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["weirctl", "service-accounts", "admin-tokens", "sinks"] {
            assert!(out.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let mut c = std::process::Command::new(weir_e2e::bin("weirctl"));
    c.args(["completions", "tcsh"]);
    let out = weir_e2e::run(c).await;
    assert_eq!(
        out.code, 2,
        "an unknown shell is a usage error: {}",
        out.stderr
    );
}
