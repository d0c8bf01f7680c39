//! The fleet's view of its config: NACKs that only a node can know about, `weirctl dataplanes`,
//! and a node that starts from its persisted config while the control plane is away.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{json, Value};
use weir_e2e::{eventually, run, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nacks_what_only_it_can_know_and_keeps_serving() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let held = stack
        .data_plane
        .config
        .current
        .load()
        .version(weir_proto::config::ResourceType::Providers)
        .to_string();
    // The control plane cannot see the nodes' environment, so it accepts this provider; the
    // node cannot resolve its secret and refuses the whole providers version.
    let out = run(stack.weirctl(&[
        "providers",
        "create",
        "--key",
        "vault",
        "--base-url",
        "https://api.example.com/v1",
        "--api-key-env",
        "WEIR_TEST_SECRET_NOT_ON_ANY_NODE",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown = eventually(Duration::from_secs(10), || async {
        let out = run(stack.weirctl(&["dataplanes", "show", "test-dp", "-o", "json"])).await;
        let v: Value = serde_json::from_str(&out.stdout).ok()?;
        let nacked = v["last_nack"].as_str().is_some_and(|s| !s.is_empty());
        nacked.then_some(v)
    })
    .await
    .expect("the NACK reached the control plane");
    let nack = shown["last_nack"].as_str().unwrap();
    assert!(
        nack.contains("missing_secret") && nack.contains("WEIR_TEST_SECRET_NOT_ON_ANY_NODE"),
        "{nack}"
    );
    assert_eq!(
        shown["acked_versions"]["providers"],
        held.as_str(),
        "{shown}"
    );
    assert_ne!(shown["current_versions"]["providers"], held.as_str());
    // It still serves with its last good providers.
    assert_eq!(
        stack
            .data_plane
            .config
            .current
            .load()
            .version(weir_proto::config::ResourceType::Providers),
        held
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list = run(stack.weirctl(&["dataplanes", "list"])).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert!(
        list.stdout.contains("test-dp") && list.stdout.contains("behind: providers"),
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("connected"), "{}", list.stdout);
    // The node's metrics say the same: its providers version and the NACK count.
    let metrics = reqwest::get(format!("http://{}/metrics", stack.data_plane.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("weir_config_version{{type=\"providers\"}} {held}")),
        "{metrics}"
    );
    let nacks: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_config_nacks_total "))
        .and_then(|v| v.parse().ok())
        .expect("nack counter");
    assert!(nacks >= 1, "{metrics}");
    assert!(
        metrics.contains("weir_request_logs_dropped_total{reason=\"queue_full\"} 0"),
        "{metrics}"
    );
    assert_eq!(shown["connected"], true);
    let missing = run(stack.weirctl(&["dataplanes", "show", "nope"])).await;
    assert_eq!(missing.code, 3);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_while_the_control_plane_is_down_serves_its_persisted_config() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let dir = tempfile::Builder::new()
        .prefix("weir-snap-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let snap_dir = dir.path().to_path_buf();
    let first = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "persisting",
        |s| {
            s.snapshot_dir = Some(snap_dir.clone());
        },
    )
    .await;
    let hash = weir_proto::api_key::hash(&key);
    weir_e2e::until_config(&first.config, "key reached the node", |s| {
        s.keys.contains_key(&hash)
    })
    .await;
    // Key changes arrive as deltas; the node folds them into the full set it keeps on disk.
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "alice",
        "--name",
        "k2",
        "--secret-only",
    ]))
    .await;
    let k2 = out.stdout.trim().to_string();
    let h2 = weir_proto::api_key::hash(&k2);
    weir_e2e::until_config(&first.config, "k2 reached the node", |s| {
        s.keys.contains_key(&h2)
    })
    .await;
    assert_eq!(
        run(stack.weirctl(&["keys", "revoke", &k2[..16]]))
            .await
            .code,
        0
    );
    weir_e2e::until_config(&first.config, "the revoke reached the node", |s| {
        !s.keys.contains_key(&h2)
    })
    .await;
    first.shutdown().await;
    let Stack {
        upstream,
        control_plane,
        data_plane,
        ..
    } = stack;
    let cp_url = format!("http://{}", control_plane.grpc_addr);
    data_plane.shutdown().await;
    control_plane.shutdown().await;

    // The control plane is gone; a node starting now has only its disk.
    let mut s = weir_data_plane::Settings::new(cp_url, "token");
    s.listen = ([127, 0, 0, 1], 0).into();
    s.node_id = "persisting".into();
    s.snapshot_dir = Some(dir.path().to_path_buf());
    let dp = weir_data_plane::DataPlane::start(s).await.unwrap();
    assert!(dp.is_ready(), "ready from the persisted config");
    let client = reqwest::Client::new();
    let ready: Value = client
        .get(format!("http://{}/readyz", dp.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["config_source"], "disk");
    assert_eq!(ready["degraded"], true);
    let resp = client
        .post(format!("http://{}/v1/chat/completions", dp.addr))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "serves with the persisted key and route"
    );
    let revoked = client
        .post(format!("http://{}/v1/chat/completions", dp.addr))
        .bearer_auth(&k2)
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        revoked.status(),
        401,
        "a key revoked before the restart stays revoked"
    );
    // Nothing secret on disk: no key, only hashes and env var names.
    for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let bytes = std::fs::read(f.path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(&key));
    }
    dp.shutdown().await;
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_changes_and_nodes_fail_over() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    // A second replica on the same database.
    let db_url = stack.database_url().await;
    let b = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: Some(db_url),
        data_dir: std::env::temp_dir(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: Some(stack.admin_token.clone()),
        dataplane_token: stack.dataplane_token.clone(),
        replica_id: "replica-b".into(),
        group_tokens: Default::default(),
        tls: None,
        secrets_key: None,
    })
    .await
    .unwrap();
    let a_url = stack.control_plane_url();
    let b_url = format!("http://{}", b.grpc_addr);
    let dp = Stack::start_data_plane_with(
        &stack.control_plane,
        &stack.dataplane_token,
        "two-homed",
        |s| {
            s.control_plane = format!("{a_url},{b_url}");
        },
    )
    .await;
    let admin_token = stack.admin_token.clone();
    let weirctl_b = |args: &[&str]| {
        let mut c = std::process::Command::new(weir_e2e::bin("weirctl"));
        c.args(args)
            .env("WEIR_CONTROL_PLANE", &b_url)
            .env("WEIR_ADMIN_TOKEN", &admin_token);
        c
    };
    // A key made through replica B reaches the node connected to replica A.
    let out = run(weirctl_b(&[
        "keys",
        "create",
        "--user",
        "alice",
        "--name",
        "via-b",
        "--secret-only",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key_b = out.stdout.trim().to_string();
    let hash = weir_proto::api_key::hash(&key_b);
    weir_e2e::until_config(
        &dp.config,
        "a change through replica B reached a node on replica A",
        |s| s.keys.contains_key(&hash),
    )
    .await;

    // Replica A goes away: the node moves to B, keeps serving, and B enforces a revoke.
    let Stack {
        control_plane: a,
        data_plane,
        upstream,
        ..
    } = stack;
    data_plane.shutdown().await;
    a.shutdown().await;
    let client = reqwest::Client::new();
    let send = |k: String, rid: &'static str| {
        client
            .post(format!("http://{}/v1/chat/completions", dp.addr))
            .bearer_auth(k)
            .header("x-request-id", rid)
            .json(&json!({"model": "gpt", "messages": []}))
            .send()
    };
    assert_eq!(send(key.clone(), "after-a-1").await.unwrap().status(), 200);
    let out = run(weirctl_b(&["keys", "revoke", &key_b[..16]])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let revoked = eventually(Duration::from_secs(20), || async {
        (send(key_b.clone(), "after-a-2").await.ok()?.status() == 401).then_some(())
    })
    .await;
    assert!(
        revoked.is_some(),
        "the node failed over to replica B and got the revoke"
    );
    // Its request logs land through B.
    let logged = eventually(Duration::from_secs(20), || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM request_logs WHERE request_id = 'after-a-1'")
                .fetch_one(&b.pool)
                .await
                .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "request logs flow through the surviving replica"
    );
    let known: String =
        sqlx::query_scalar("SELECT control_plane FROM dataplanes WHERE node_id = 'two-homed'")
            .fetch_one(&b.pool)
            .await
            .unwrap();
    assert_eq!(known, "replica-b");
    // The node's earlier session on replica A ended, but it is connected (to B).
    let connected: bool = sqlx::query_scalar(
        "SELECT connected_since IS NOT NULL FROM dataplanes WHERE node_id = 'two-homed'",
    )
    .fetch_one(&b.pool)
    .await
    .unwrap();
    assert!(connected);
    dp.shutdown().await;
    b.shutdown().await;
    drop(upstream);
}

/// The URL of the stack's database, rebuilt from the running connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_one_key_among_many_sends_a_small_delta() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    // A thousand more keys for alice, written in bulk, announced once.
    let pool = &stack.control_plane.pool;
    sqlx::query(
        "INSERT INTO api_keys (id, name, key_hash, display_prefix, owner_user_id, user_id)
         SELECT gen_random_uuid(), 'bulk-' || i, sha256(('bulk-secret-' || i)::bytea),
                'weir_sk_b' || lpad(i::text, 7, '0'), u.id, u.id
         FROM generate_series(1, 1000) AS i, users u WHERE u.name = 'alice'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE config_versions SET version = version + 1 WHERE resource_type = 'api_keys'",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('weir_config', 'api_keys')")
        .execute(pool)
        .await
        .unwrap();
    weir_e2e::until_config(&stack.data_plane.config, "all keys reached the node", |s| {
        s.keys.len() == 1001
    })
    .await;
    let cfg = stack.data_plane.config.clone();
    let slot = weir_proto::config::ResourceType::ApiKeys as usize;
    let full_bytes = cfg.last_response_bytes[slot].load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        full_bytes > 50_000,
        "the full set went as a snapshot ({full_bytes} bytes)"
    );

    let out = run(stack.weirctl(&["keys", "revoke", &key[..16]])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    weir_e2e::until_config(&cfg, "the revoke reached the node", |s| {
        s.keys.len() == 1000
    })
    .await;
    let delta_bytes = cfg.last_response_bytes[slot].load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        delta_bytes < 1024,
        "one revoke among 1001 keys sent {delta_bytes} bytes"
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", stack.gateway_url()))
        .bearer_auth(&key)
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A node that reconnects holding that version gets nothing more; one that holds nothing
    // gets the full set.
    let fresh =
        Stack::start_data_plane(&stack.control_plane, &stack.dataplane_token, "fresh").await;
    assert_eq!(fresh.config.current.load().keys.len(), 1000);
    fresh.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_groups_scope_routes_keys_and_policies() {
    let stack = Stack::start().await;
    let key = stack.seed(&[("everyone", "mock-model")]).await;
    let out = run(stack.weirctl(&[
        "models",
        "create",
        "--key",
        "internal-model",
        "--target",
        "mock:mock-model",
        "--group",
        "internal",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "alice",
        "--name",
        "internal-key",
        "--group",
        "internal",
        "--secret-only",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let internal_key = out.stdout.trim().to_string();
    let out = run(stack.weirctl(&[
        "policy",
        "set",
        "--group",
        "public",
        "--capture-mode",
        "summary_only",
        "-o",
        "json",
    ]))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let bad = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "alice",
        "--name",
        "x",
        "--group",
        "Bad Group",
    ]))
    .await;
    assert_eq!(bad.code, 7, "{}", bad.stderr);

    let public =
        Stack::start_data_plane_with(&stack.control_plane, &stack.dataplane_token, "pub-1", |s| {
            s.group = "public".into();
        })
        .await;
    let internal =
        Stack::start_data_plane_with(&stack.control_plane, &stack.dataplane_token, "int-1", |s| {
            s.group = "internal".into();
        })
        .await;
    // Let both receive everything made so far.
    for dp in [&public, &internal] {
        let cfg = dp.config.clone();
        eventually(Duration::from_secs(10), || {
            let cfg = cfg.clone();
            async move {
                let s = cfg.current.load();
                (s.policy.is_some() && s.routes.contains_key("everyone")).then_some(())
            }
        })
        .await
        .expect("config arrived");
    }
    let pub_snap = public.config.current.load();
    let int_snap = internal.config.current.load();
    assert!(
        !pub_snap.routes.contains_key("internal-model"),
        "a public node never gets the internal model"
    );
    assert!(int_snap.routes.contains_key("internal-model"));
    let ih = weir_proto::api_key::hash(&internal_key);
    assert!(!pub_snap.keys.contains_key(&ih));
    assert!(int_snap.keys.contains_key(&ih));
    assert_eq!(
        pub_snap.policy.as_ref().unwrap().capture_mode,
        "summary_only"
    );
    assert_eq!(
        int_snap.policy.as_ref().unwrap().capture_mode,
        "redacted_payloads"
    );

    let client = reqwest::Client::new();
    let call = |addr: std::net::SocketAddr, k: String, model: &'static str| {
        client
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth(k)
            .json(&json!({"model": model, "messages": []}))
            .send()
    };
    assert_eq!(
        call(public.addr, key.clone(), "everyone")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        call(public.addr, key.clone(), "internal-model")
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        call(public.addr, internal_key.clone(), "everyone")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        call(internal.addr, internal_key.clone(), "internal-model")
            .await
            .unwrap()
            .status(),
        200
    );
    // A key added later for the internal group reaches only internal nodes (as a delta).
    let out = run(stack.weirctl(&[
        "keys",
        "create",
        "--user",
        "alice",
        "--name",
        "internal-2",
        "--group",
        "internal",
        "--secret-only",
    ]))
    .await;
    let h2 = weir_proto::api_key::hash(out.stdout.trim());
    weir_e2e::until_config(&internal.config, "the internal node got the new key", |s| {
        s.keys.contains_key(&h2)
    })
    .await;
    assert!(!public.config.current.load().keys.contains_key(&h2));
    let shown = run(stack.weirctl(&["policy", "show", "--group", "public", "-o", "json"])).await;
    let v: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(v["fleet_group"], "public");
    assert_eq!(v["capture_mode"], "summary_only");
    public.shutdown().await;
    internal.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_bootstrap_token_admits_only_its_group() {
    let stack = Stack::start_with(|s| {
        s.group_tokens
            .insert("internal".into(), "internal-bootstrap-token".into());
    })
    .await;
    let key = stack.seed(&[("gpt", "mock-model")]).await;
    let internal = Stack::start_data_plane_with(
        &stack.control_plane,
        "internal-bootstrap-token",
        "int-tok",
        |s| {
            s.group = "internal".into();
        },
    )
    .await;
    assert!(internal.is_ready());
    // Its request logs ship with the same token.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", internal.addr))
        .bearer_auth(&key)
        .header("x-request-id", "group-token-1")
        .json(&json!({"model": "gpt", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let logged = eventually(Duration::from_secs(5), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM request_logs WHERE request_id = 'group-token-1'",
        )
        .fetch_one(&stack.control_plane.pool)
        .await
        .ok()?;
        (n == 1).then_some(())
    })
    .await;
    assert!(logged.is_some());
    // The same token for a node claiming another group gets nothing.
    let mut s =
        weir_data_plane::Settings::new(stack.control_plane_url(), "internal-bootstrap-token");
    s.listen = ([127, 0, 0, 1], 0).into();
    s.node_id = "imposter".into();
    s.group = "public".into();
    let imposter = weir_data_plane::DataPlane::start(s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !imposter.is_ready(),
        "a group token admitted a node of another group"
    );
    imposter.shutdown().await;
    internal.shutdown().await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_streams_and_admin_run_over_tls_when_configured() {
    let dir = tempfile::Builder::new()
        .prefix("weir-tls-")
        .tempdir()
        .unwrap();
    let weir_e2e::TestCerts { ca, cert, key } = weir_e2e::throwaway_certs(dir.path()).await;
    let (admin, token) = (weir_e2e::random_token(), weir_e2e::random_token());
    let cp = weir_control_plane::ControlPlane::start(weir_control_plane::Settings {
        database_url: Some(weir_e2e::fresh_database().await),
        data_dir: std::env::temp_dir(),
        grpc_listen: ([127, 0, 0, 1], 0).into(),
        http_listen: ([127, 0, 0, 1], 0).into(),
        purge: Default::default(),
        reconcile: Default::default(),
        admin_token: Some(admin.clone()),
        dataplane_token: token.clone(),
        replica_id: "tls-cp".into(),
        group_tokens: Default::default(),
        tls: Some((cert.clone(), key.clone())),
        secrets_key: None,
    })
    .await
    .unwrap();
    let port = cp.grpc_addr.port();
    let node = |url: String, ca: Option<std::path::PathBuf>, id: &str| {
        let mut s = weir_data_plane::Settings::new(url, token.clone());
        s.listen = ([127, 0, 0, 1], 0).into();
        s.node_id = id.into();
        s.control_plane_ca = ca;
        weir_data_plane::DataPlane::start(s)
    };
    let trusted = node(
        format!("https://localhost:{port}"),
        Some(ca.clone()),
        "tls-ok",
    )
    .await
    .unwrap();
    let plaintext = node(format!("http://127.0.0.1:{port}"), None, "tls-plain")
        .await
        .unwrap();
    let untrusted = node(format!("https://localhost:{port}"), None, "tls-untrusted")
        .await
        .unwrap();
    let ready = eventually(Duration::from_secs(10), || async {
        trusted.is_ready().then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "a node trusting the CA gets its config over TLS"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!plaintext.is_ready(), "plaintext is refused");
    assert!(!untrusted.is_ready(), "an unknown certificate is refused");
    let mut c = std::process::Command::new(weir_e2e::bin("weirctl"));
    c.args(["users", "list"])
        .env("WEIR_CONTROL_PLANE", format!("https://localhost:{port}"))
        .env("WEIR_CONTROL_PLANE_CA", &ca)
        .env("WEIR_ADMIN_TOKEN", &admin);
    let out = run(c).await;
    assert_eq!(out.code, 0, "weirctl over TLS: {}", out.stderr);
    for dp in [trusted, plaintext, untrusted] {
        dp.shutdown().await;
    }
    cp.shutdown().await;
}
