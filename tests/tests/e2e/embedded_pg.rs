//! The embedded cluster lives as long as its handle, whichever thread started it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use weir_control_plane::embedded_pg::{Durability, EmbeddedPostgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_outlives_the_thread_that_started_it() {
    let dir = tempfile::Builder::new()
        .prefix("weir-emb-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("pg");
    // Started from a thread that ends right away, as a pooled blocking thread eventually does.
    let pg = std::thread::spawn(move || EmbeddedPostgres::start(&root, Durability::Throwaway))
        .join()
        .unwrap()
        .expect("cluster starts");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pg.is_running(),
        "the cluster stopped when its starting thread ended"
    );
    let pool = weir_control_plane::database::connect(&pg.url("postgres"))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    // Backends keep freed executor memory instead of trimming it after every batch. They
    // inherit the postmaster's environment; theirs is overwritten by their process titles.
    let pid_file = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).unwrap();
    let postmaster = pid_file.lines().next().unwrap().trim();
    let environ = std::fs::read(format!("/proc/{postmaster}/environ")).unwrap();
    let expected = std::env::var("GLIBC_TUNABLES")
        .unwrap_or_else(|_| weir_control_plane::embedded_pg::POSTGRES_MALLOC_TUNABLES.to_string());
    // glibc splits the variable in place as it reads it, so look for each setting.
    for setting in expected.split(':') {
        assert!(
            environ
                .windows(setting.len())
                .any(|w| w == setting.as_bytes()),
            "the postmaster runs without {setting}"
        );
    }
    assert!(environ.windows(15).any(|w| w == b"GLIBC_TUNABLES="));
    pool.close().await;
    // Restarting on the same folder reuses the cluster and its password.
    let port = pg.port();
    let data_dir = pg.data_dir().to_path_buf();
    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "stopped on drop"
    );
    let again = EmbeddedPostgres::start(&dir.path().join("pg"), Durability::Throwaway).unwrap();
    assert_eq!(again.data_dir(), data_dir);
    assert_eq!(
        again.port(),
        port,
        "a restarted cluster keeps its port, so its URL stays valid"
    );
    let pool = weir_control_plane::database::connect(&again.url("postgres"))
        .await
        .unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
}
