//! `scripts/quickstart` as a newcomer runs it: it comes up, its printed curl returns a
//! completion, weirctl shows the log within 2 s, and Ctrl-C stops everything.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_e2e::{bin, bin_dir, eventually, free_port, repo_root, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_serves_logs_and_stops_on_ctrl_c() {
    let data = tempfile::Builder::new()
        .prefix("weir-qs-")
        .tempdir()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (listen, grpc, mock) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let target_dir = bin_dir().parent().unwrap().to_path_buf();
    let child = Command::new(repo_root().join("scripts/quickstart"))
        .env("WEIR_QUICKSTART_PROFILE", "debug")
        // scripts/test built the binaries; `cargo test` builds weirctl with other features, so
        // a build here would relink it while parallel tests are running it.
        .env("WEIR_QUICKSTART_BUILD", "0")
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("WEIR_DATA_DIR", data.path())
        .env("WEIR_LISTEN", &listen)
        .env("WEIR_GRPC_LISTEN", &grpc)
        .env("WEIR_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("WEIR_MOCK_LISTEN", &mock)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let mut child = Group(Some(child));
    // Read the banner until the curl line, off the runtime.
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (curl, lines) = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout);
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut curl = None;
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line.trim_end().to_string());
            if line.starts_with("curl ") {
                curl = Some(line.trim().to_string());
                break;
            }
        }
        // Keep draining so the script never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        (curl, lines)
    })
    .await
    .unwrap();
    let curl = curl.unwrap_or_else(|| panic!("quickstart printed no curl:\n{}", lines.join("\n")));
    assert!(lines.iter().any(|l| l == "Weir is ready."), "{lines:?}");
    assert!(data.path().join("demo-key").exists());
    assert!(data.path().join("admin-token").exists());

    let out = run({
        let mut c = Command::new("bash");
        c.args(["-c", &curl]);
        c
    })
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from the mock upstream"
    );

    let admin_token = std::fs::read_to_string(data.path().join("admin-token")).unwrap();
    let answered = Instant::now();
    let row = eventually(Duration::from_secs(2), || async {
        let mut c = Command::new(bin("weirctl"));
        c.args(["logs", "list", "--request-id", "hello-weir", "-o", "json"])
            .env("WEIR_CONTROL_PLANE", format!("http://{grpc}"))
            .env("WEIR_ADMIN_TOKEN", admin_token.trim());
        let out = run(c).await;
        let v: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
        v["logs"].as_array()?.first().cloned()
    })
    .await;
    let row = row.expect("weirctl shows the quickstart request within 2 s");
    assert!(answered.elapsed() <= Duration::from_secs(3));
    assert_eq!(row["model_key"], "demo");
    assert_eq!(row["status_code"], 200);
    assert!(row["total_tokens"].as_u64().unwrap() > 0);
    assert_eq!(row["pricing_status"], "priced", "{row}");

    let mut show = Command::new(bin("weirctl"));
    show.args(["logs", "show", "hello-weir"])
        .env("WEIR_CONTROL_PLANE", format!("http://{grpc}"))
        .env("WEIR_ADMIN_TOKEN", admin_token.trim());
    let shown = run(show).await;
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let key = std::fs::read_to_string(data.path().join("demo-key")).unwrap();
    assert!(
        !shown.stdout.contains(key.trim()),
        "the key appears in the log"
    );
    assert!(!shown.stdout.to_lowercase().contains("bearer weir_sk"));

    // Ctrl-C reaches the whole foreground group, as a terminal would send it.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let exited = tokio::task::spawn_blocking(move || child.wait_for_exit(Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(exited, "quickstart did not stop on Ctrl-C");
    for addr in [&listen, &grpc, &mock] {
        let closed = eventually(Duration::from_secs(10), || async {
            std::net::TcpStream::connect(addr.as_str())
                .is_err()
                .then_some(())
        })
        .await;
        assert!(
            closed.is_some(),
            "{addr} still accepts connections after Ctrl-C"
        );
    }
    // The embedded Postgres stopped too: nothing runs from the data folder.
    let needle = data.path().display().to_string();
    let pg_alive = eventually(Duration::from_secs(15), || {
        let needle = needle.clone();
        async move { (!process_mentions(&needle)).then_some(()) }
    })
    .await;
    assert!(
        pg_alive.is_some(),
        "a process still runs from the quickstart data folder"
    );
}

/// Whether any process's command line mentions `needle`.
fn process_mentions(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmd| String::from_utf8_lossy(&cmd).contains(needle))
}

/// The quickstart's process group: interrupted and reaped even when the test fails half-way, so
/// nothing it started outlives the test.
struct Group(Option<std::process::Child>);

impl Group {
    fn wait_for_exit(&mut self, limit: Duration) -> bool {
        let Some(child) = self.0.as_mut() else {
            return true;
        };
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.0 = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGINT);
            if !self.wait_for_exit(Duration::from_secs(30)) {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                if let Some(mut c) = self.0.take() {
                    let _ = c.wait();
                }
            }
        }
    }
}
