//! A private Postgres cluster started from the installed server binaries.
//!
//! Used when no database is configured (the quickstart's default) and by the test harness. The
//! cluster lives in a folder of its own, listens on loopback only, requires a password that is
//! generated once and kept beside it, and stops when this process stops: on drop, and through a
//! parent-death signal if this process dies without dropping it.
//!
//! `initdb` and `postgres` refuse to run as root, so when we are root they run as the `postgres`
//! system user, and the cluster folder belongs to that user.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Why the embedded cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error("no Postgres server binaries found (looked in {0}); install Debian's `postgresql` package or set WEIR_PG_BINDIR")]
    NoBinaries(String),
    #[error("running as root, but there is no `postgres` system user to run the server as")]
    NoPostgresUser,
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed ({status}): {output}")]
    Initdb { status: String, output: String },
    #[error("postgres exited during start ({status}); its log ({log}) ends with:\n{tail}")]
    Exited {
        status: String,
        log: String,
        tail: String,
    },
    #[error("postgres did not accept connections within {0:?}")]
    Timeout(Duration),
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedPgError {
    let action = action.into();
    move |source| EmbeddedPgError::Io { action, source }
}

/// glibc malloc settings for the embedded cluster's processes: keep up to 16 MB of freed heap
/// per backend instead of trimming it, and serve blocks under 4 MB from the heap rather than
/// fresh mappings (a fixed threshold also stops glibc's own adjustment of both).
pub const POSTGRES_MALLOC_TUNABLES: &str =
    "glibc.malloc.trim_threshold=16777216:glibc.malloc.mmap_threshold=4194304";

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Postgres defaults: what a gateway's data deserves.
    Durable,
    /// fsync off: for throwaway test clusters only.
    Throwaway,
}

/// A running private cluster; stopped (fast shutdown) on drop.
///
/// The server is spawned by a keeper thread that lives exactly as long as this handle: the
/// parent-death signal belongs to the spawning *thread*, so spawning from a pooled thread (a
/// tokio blocking thread retires after 10 s idle) would stop the cluster when that thread ends.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    keeper: Option<Keeper>,
    port: u16,
    password: String,
    data_dir: PathBuf,
}

#[derive(Debug)]
struct Keeper {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    /// Set by the keeper when the server exits on its own.
    exited: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The superuser role of embedded clusters.
pub const SUPERUSER: &str = "weir";

impl EmbeddedPostgres {
    /// Initialises the cluster under `root` if needed and starts it.
    pub fn start(root: &Path, durability: Durability) -> Result<Self, EmbeddedPgError> {
        let bindir = find_bindir()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let root = usable_root(root, run_as.is_some())?;
        fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
        let data_dir = root.join("pgdata");
        let password_file = root.join("password");

        if !data_dir.join("PG_VERSION").exists() {
            init_cluster(&bindir, &root, &data_dir, &password_file, run_as)?;
        }
        let password = fs::read_to_string(&password_file)
            .map_err(io(format!("reading {}", password_file.display())))?
            .trim()
            .to_string();

        let port = stable_port(&root)?;
        let log_path = root.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        if let Some(user) = run_as {
            let _ = std::os::unix::fs::chown(&log_path, Some(user.uid), Some(user.gid));
        }
        let mut cmd = Command::new(bindir.join("postgres"));
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "max_connections=200"]);
        // Request-log ingest is WAL-bound: without these, backends waited on WAL buffer
        // mapping and checkpointed every ~1 GB of logs; a larger minimum keeps WAL segments for
        // recycling instead of zero-filling new ones.
        // Durability is unchanged (fsync and synchronous commit stay on).
        cmd.args(["-c", "shared_buffers=256MB"])
            .args(["-c", "wal_buffers=64MB"])
            .args(["-c", "min_wal_size=1GB"])
            .args(["-c", "max_wal_size=4GB"])
            .args(["-c", "checkpoint_timeout=15min"])
            .args(["-c", "checkpoint_completion_target=0.9"])
            .args(["-c", "wal_compression=lz4"])
            .args(["-c", "default_toast_compression=lz4"]);
        if durability == Durability::Throwaway {
            cmd.args(["-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"]);
        }
        // Each ingest COPY builds a few MB of executor memory (a slot per row) and frees it at
        // the end; glibc's default trim gave it back to the kernel after every batch, so the
        // next batch page-faulted it in again (~200k faults in a 10 s benchmark run, 60 %
        // fewer with these). Kept for the embedded cluster only; an operator's own setting wins.
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            cmd.env("GLIBC_TUNABLES", POSTGRES_MALLOC_TUNABLES);
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("cloning log handle"))?)
            .stderr(log);
        as_user(&mut cmd, run_as);
        // If this process dies without dropping us, the cluster must not outlive it.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the pre-exec closure.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGINT)
                    .map_err(std::io::Error::from)
            });
        }
        let exited = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let (spawned_tx, spawned_rx) = std::sync::mpsc::channel();
        let exited_by_keeper = exited.clone();
        let thread = std::thread::Builder::new()
            .name("weir-embedded-postgres".into())
            .spawn(move || keep(cmd, spawned_tx, stop_rx, exited_by_keeper))
            .map_err(io("starting the postgres keeper thread"))?;
        spawned_rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("keeper thread ended")))
            .map_err(io("spawning postgres"))?;
        let mut pg = EmbeddedPostgres {
            keeper: Some(Keeper {
                stop,
                thread,
                exited,
            }),
            port,
            password,
            data_dir,
        };
        pg.wait_ready(&log_path, Duration::from_secs(60))?;
        Ok(pg)
    }

    fn wait_ready(&mut self, log_path: &Path, limit: Duration) -> Result<(), EmbeddedPgError> {
        let start = Instant::now();
        loop {
            let exited = self
                .keeper
                .as_ref()
                .and_then(|k| k.exited.lock().expect("exit status lock").clone());
            if let Some(status) = exited {
                return Err(EmbeddedPgError::Exited {
                    status,
                    log: log_path.display().to_string(),
                    tail: tail(log_path),
                });
            }
            // The server accepts TCP before it accepts logins, so probe with a real startup
            // handshake: an SSLRequest answered with 'N' or 'S' means the postmaster is up, and
            // "database system is starting up" clears within the same few hundred ms.
            if ssl_request_answered(self.port) && log_says_ready(log_path) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(EmbeddedPgError::Timeout(limit));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The loopback port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the cluster with a fast shutdown and waits for it.
    pub fn stop(&mut self) {
        if let Some(k) = self.keeper.take() {
            let _ = k.stop.send(());
            let _ = k.thread.join();
        }
    }

    /// Whether the server is still running.
    pub fn is_running(&self) -> bool {
        self.keeper
            .as_ref()
            .is_some_and(|k| k.exited.lock().expect("exit status lock").is_none())
    }
}

/// The keeper thread: spawns the server, watches it, and stops it when asked (or when the
/// handle is dropped without asking).
fn keep(
    mut cmd: Command,
    spawned: std::sync::mpsc::Sender<std::io::Result<()>>,
    stop: std::sync::mpsc::Receiver<()>,
    exited: std::sync::Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut child: Child = match cmd.spawn() {
        Ok(c) => {
            let _ = spawned.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = spawned.send(Err(e));
            return;
        }
    };
    // Until asked to stop, or until the handle is gone (disconnected).
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        stop.recv_timeout(Duration::from_millis(100))
    {
        if let Ok(Some(status)) = child.try_wait() {
            *exited.lock().expect("exit status lock") = Some(status.to_string());
            return;
        }
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy)]
struct SystemUser {
    uid: u32,
    gid: u32,
}

fn as_user(cmd: &mut Command, user: Option<SystemUser>) {
    if let Some(u) = user {
        cmd.uid(u.uid).gid(u.gid);
    }
}

fn init_cluster(
    bindir: &Path,
    root: &Path,
    data_dir: &Path,
    password_file: &Path,
    run_as: Option<SystemUser>,
) -> Result<(), EmbeddedPgError> {
    let password: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(password_file)
            .map_err(io(format!("writing {}", password_file.display())))?;
        f.write_all(password.as_bytes())
            .map_err(io("writing password"))?;
    }
    // A half-made cluster from an interrupted initdb would make initdb refuse; start clean.
    if data_dir.exists() {
        fs::remove_dir_all(data_dir).map_err(io(format!("clearing {}", data_dir.display())))?;
    }
    fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io("setting data folder permissions"))?;
    if let Some(u) = run_as {
        for p in [root, data_dir, password_file] {
            std::os::unix::fs::chown(p, Some(u.uid), Some(u.gid))
                .map_err(io(format!("handing {} to the postgres user", p.display())))?;
        }
    }
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        .arg("--auth=scram-sha-256")
        .arg(format!("--pwfile={}", password_file.display()))
        .stdin(Stdio::null());
    as_user(&mut cmd, run_as);
    let out = cmd.output().map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(EmbeddedPgError::Initdb {
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// Picks the newest installed server: WEIR_PG_BINDIR, else /usr/lib/postgresql/<major>/bin.
fn find_bindir() -> Result<PathBuf, EmbeddedPgError> {
    if let Ok(dir) = std::env::var("WEIR_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if dir.join("postgres").exists() && dir.join("initdb").exists() {
            return Ok(dir);
        }
        return Err(EmbeddedPgError::NoBinaries(dir.display().to_string()));
    }
    let base = Path::new("/usr/lib/postgresql");
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((major, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| EmbeddedPgError::NoBinaries(base.display().to_string()))
}

fn postgres_user() -> Result<SystemUser, EmbeddedPgError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(io("reading /etc/passwd"))?;
    parse_passwd_user(&passwd, "postgres").ok_or(EmbeddedPgError::NoPostgresUser)
}

fn parse_passwd_user(passwd: &str, name: &str) -> Option<SystemUser> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some(SystemUser {
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
        })
    })
}

/// When we run as root the server runs as `postgres`, which must be able to reach the cluster
/// folder; if an ancestor is closed to others (a private home or clone folder), fall back to a
/// folder under /var/tmp named after the requested one, so the same path always maps to the same
/// cluster.
fn usable_root(root: &Path, dropping_privileges: bool) -> Result<PathBuf, EmbeddedPgError> {
    let abs = if root.is_absolute() {
        root.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(io("reading the current folder"))?
            .join(root)
    };
    if !dropping_privileges || ancestors_traversable(&abs) {
        return Ok(abs);
    }
    let digest = weir_proto::api_key::hash(&abs.display().to_string());
    let alt = PathBuf::from(format!("/var/tmp/weir-pg-{}", hex::encode(&digest[..8])));
    tracing::warn!(
        requested = %abs.display(),
        using = %alt.display(),
        "the postgres user cannot reach the requested folder; keeping the cluster elsewhere"
    );
    Ok(alt)
}

fn ancestors_traversable(path: &Path) -> bool {
    path.ancestors().skip(1).all(|a| match fs::metadata(a) {
        Ok(m) => m.mode() & 0o001 != 0,
        // Not created yet: create_dir_all will make it 0755 (umask permitting).
        Err(_) => true,
    })
}

/// The port this cluster used last time when it is still free, so its URL survives restarts;
/// otherwise a new free one, remembered for next time.
fn stable_port(root: &Path) -> Result<u16, EmbeddedPgError> {
    let file = root.join("port");
    if let Some(p) = fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
    {
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return Ok(p);
        }
    }
    let p = free_port()?;
    let _ = fs::write(&file, p.to_string());
    Ok(p)
}

fn free_port() -> Result<u16, EmbeddedPgError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

fn ssl_request_answered(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    // SSLRequest: length 8, code 80877103.
    let req = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1) if b[0] == b'N' || b[0] == b'S')
}

fn log_says_ready(log_path: &Path) -> bool {
    fs::read_to_string(log_path)
        .map(|s| {
            s.rsplit("starting PostgreSQL")
                .next()
                .is_some_and(|last| last.contains("ready to accept connections"))
        })
        .unwrap_or(false)
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:104:110:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n\
                      broken\n";
        let u = parse_passwd_user(passwd, "postgres").expect("found");
        assert_eq!((u.uid, u.gid), (104, 110));
        assert!(parse_passwd_user(passwd, "nobody").is_none());
        assert!(parse_passwd_user("postgres:x:notanumber:1::/:", "postgres").is_none());
    }
}
