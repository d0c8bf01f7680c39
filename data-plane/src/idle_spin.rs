//! Serving runtimes that poll their event queue for a short while before they sleep.
//!
//! On a VM whose idle vCPUs halt at once (no guest halt-polling), every sleep and wake of a
//! serving thread costs tens of microseconds of exit and re-entry: at one connection that was
//! most of what the data plane added to a request's latency (docs/benchmarks.md). Go's
//! scheduler and the guest `haltpoll` driver answer the same problem the same way: look for
//! work a little longer before going to sleep. The window (`serve_idle_spin`, 50 µs by default)
//! adapts like `haltpoll`'s: it closes while wake-ups come later than it, so a node whose
//! requests wait seconds on their providers, or an idle one, stops polling on its own.
//!
//! `haltpoll` polls only on a CPU with nothing else to run; a thread cannot know that, so it
//! finds out: it stops as soon as a yield between polls ran another task (its context-switch
//! count moved) or the machine has more runnable tasks than CPUs (a polling CPU never looks
//! idle, so waiting work would not move onto it), and the window shrinks while that keeps
//! happening. Without
//! this, polling under saturation took the CPU from co-located work (the log worker, a
//! control plane and Postgres on the same cores) and cost a quarter of the throughput with
//! payload capture on (docs/benchmarks.md, session 7).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Serialises runtime construction so each build's new epoll descriptors can be told apart.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A single-threaded runtime for a serving thread; with a non-zero `spin`, each time it is about
/// to sleep it first polls its epoll descriptors for up to `spin`, yielding the CPU between polls.
pub fn serving_runtime(spin: Duration) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    if spin.is_zero() {
        return builder.build();
    }
    // Tokio does not expose its epoll descriptor: find the ones the build created. One that
    // another thread opened meanwhile is harmless: polling it can only end a spin early.
    let fds = std::sync::Arc::new(std::sync::OnceLock::<Vec<i32>>::new());
    let state = std::sync::Arc::new(SpinState::new(spin));
    let (park_fds, park_state, unpark_state) = (fds.clone(), state.clone(), state);
    builder.on_thread_park(move || {
        let Some(fds) = park_fds.get() else { return };
        let window = park_state.window_ns.load(Ordering::Relaxed);
        let started = Instant::now();
        let contended =
            window > 0 && wait_ready(fds, Duration::from_nanos(window)) == Polled::Contended;
        park_state.contended.store(contended, Ordering::Relaxed);
        park_state
            .parked_at_ns
            .store(park_state.since(started), Ordering::Relaxed);
    });
    builder.on_thread_unpark(move || {
        let s = &unpark_state;
        // From the start of the park: polling and sleep together.
        let waited = s
            .since(Instant::now())
            .saturating_sub(s.parked_at_ns.load(Ordering::Relaxed));
        let window = s.window_ns.load(Ordering::Relaxed);
        let contended = s.contended.load(Ordering::Relaxed);
        s.window_ns.store(
            next_window(window, waited, s.max_ns, contended),
            Ordering::Relaxed,
        );
    });
    let guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = eventpoll_fds();
    let rt = builder.build()?;
    let created: Vec<i32> = eventpoll_fds()
        .into_iter()
        .filter(|fd| !before.contains(fd))
        .collect();
    drop(guard);
    if created.len() > MAX_POLLED {
        tracing::warn!(
            found = created.len(),
            "more epoll descriptors than expected around a serving runtime's build; polling the first {MAX_POLLED}"
        );
    }
    if created.is_empty() {
        tracing::warn!(
            "no epoll descriptor found for a serving runtime; it sleeps without polling"
        );
    } else {
        let _ = fds.set(created);
    }
    Ok(rt)
}

/// One serving thread's polling window, adapted like the guest `haltpoll` governor's: it grows
/// while wake-ups come within the longest window and shrinks while they come later, so a node
/// whose requests wait seconds on their providers stops polling on its own.
struct SpinState {
    epoch: Instant,
    max_ns: u64,
    window_ns: AtomicU64,
    /// When the thread last began to park (before polling), in ns since `epoch`.
    parked_at_ns: AtomicU64,
    /// The last park's polling ended because another task wanted the CPU.
    contended: AtomicBool,
}

impl SpinState {
    fn new(max: Duration) -> Self {
        let max_ns = max.as_nanos().min(u64::MAX as u128) as u64;
        SpinState {
            epoch: Instant::now(),
            max_ns,
            window_ns: AtomicU64::new(max_ns),
            parked_at_ns: AtomicU64::new(0),
            contended: AtomicBool::new(false),
        }
    }

    fn since(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }
}

/// The smallest window a growing one starts from.
const GROW_START_NS: u64 = 10_000;

/// The next polling window after a park that waited `waited_ns` in all (polling and sleep), and
/// whose polling was cut short by another task wanting the CPU (`contended`).
fn next_window(window_ns: u64, waited_ns: u64, max_ns: u64, contended: bool) -> u64 {
    if waited_ns <= max_ns && !contended {
        // The wake-up came within reach: poll (at least) that long next time.
        window_ns.saturating_mul(2).max(GROW_START_NS).min(max_ns)
    } else {
        let half = window_ns / 2;
        if half < GROW_START_NS / 2 {
            0
        } else {
            half
        }
    }
}

/// The process's open epoll descriptors, from `/proc/self/fd` (empty where that is missing).
fn eventpoll_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let target = std::fs::read_link(entry.path()).ok()?;
        if target.as_os_str() != "anon_inode:[eventpoll]" {
            return None;
        }
        entry.file_name().to_str()?.parse().ok()
    })
    .collect()
}

/// The most epoll descriptors polled per runtime (tokio's build makes one).
const MAX_POLLED: usize = 4;

/// How a poll before sleeping ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polled {
    /// A descriptor is ready (or the poll failed: the runtime's own wait will say why).
    Ready,
    /// The window passed with nothing to do and nothing else wanting the CPU.
    Quiet,
    /// Another task wanted the CPU (a yield ran it, or tasks wait for CPUs): polling would take
    /// CPU from real work.
    Contended,
}

/// Polls `fds` (epoll descriptors: readable when they hold events, which polling does not
/// consume) until one is ready, `spin` has passed, or another task wants this CPU.
fn wait_ready(fds: &[i32], spin: Duration) -> Polled {
    // On the stack: this runs each time a serving thread is about to sleep.
    let mut polled = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; MAX_POLLED];
    for (p, &fd) in polled.iter_mut().zip(fds) {
        p.fd = fd;
    }
    let count = fds.len().min(MAX_POLLED) as libc::nfds_t;
    let deadline = Instant::now() + spin;
    // Read once polling goes on past the first look, so a park that finds work at once pays
    // for neither this nor the run-queue check.
    let mut switches_before: Option<i64> = None;
    loop {
        // SAFETY: `polled` holds at least `count` valid pollfd structs.
        let n = unsafe { libc::poll(polled.as_mut_ptr(), count, 0) };
        if n != 0 {
            return Polled::Ready;
        }
        if Instant::now() >= deadline {
            return Polled::Quiet;
        }
        if switches_before.is_none() {
            if runnable_beyond_cpus() {
                // Tasks wait for a CPU somewhere: a polling thread keeps its CPU from looking
                // idle, so the scheduler would not move them here.
                return Polled::Contended;
            }
            switches_before = Some(thread_switches());
        }
        // Lets anything else runnable on this CPU go first. If something did, the CPU is not
        // idle: polling on would only take it from the log worker, a co-located control plane
        // or the load itself (this cost a quarter of the throughput under saturation).
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
        if Some(thread_switches()) != switches_before {
            return Polled::Contended;
        }
    }
}

/// Whether more tasks are runnable machine-wide than the machine has CPUs (the running count of
/// `/proc/loadavg` includes the caller); false where that cannot be read. Both counts are the
/// host's, not a container's share: in a busy shared host this keeps polling off.
fn runnable_beyond_cpus() -> bool {
    use std::os::unix::fs::FileExt;
    thread_local! {
        static LOADAVG: Option<std::fs::File> = std::fs::File::open("/proc/loadavg").ok();
    }
    static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    let cpus =
        *CPUS.get_or_init(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize);
    let mut buf = [0u8; 128];
    let read = LOADAVG.with(|f| f.as_ref().and_then(|f| f.read_at(&mut buf, 0).ok()));
    read.and_then(|n| running_tasks(&buf[..n]))
        .is_some_and(|running| running > cpus)
}

/// The running-task count in a `/proc/loadavg` line ("0.20 0.18 0.12 3/250 1234": 3).
fn running_tasks(line: &[u8]) -> Option<usize> {
    let field = std::str::from_utf8(line)
        .ok()?
        .split_ascii_whitespace()
        .nth(3)?;
    field.split_once('/')?.0.parse().ok()
}

/// This thread's context switches so far (voluntary and not), or 0 where unknown; a yield that
/// ran another task adds one.
fn thread_switches() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_THREAD is Linux's.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
            return 0;
        }
        usage.ru_nvcsw + usage.ru_nivcsw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An epoll descriptor watching a fresh eventfd, and the eventfd.
    fn epoll_with_eventfd() -> (i32, i32) {
        // SAFETY: plain descriptor-creating calls; results are checked.
        unsafe {
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            let ev = libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK);
            assert!(ep >= 0 && ev >= 0);
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: 1,
            };
            assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, ev, &mut event), 0);
            (ep, ev)
        }
    }

    #[test]
    fn the_window_grows_while_wake_ups_come_within_reach_and_shrinks_otherwise() {
        let max = 50_000;
        let cases = [
            // (window, waited, contended, next)
            (50_000, 20_000, false, 50_000), // caught by polling: stays at the maximum
            (0, 30_000, false, 10_000),      // a short sleep: start polling again
            (10_000, 30_000, false, 20_000), // and grow
            (40_000, 45_000, false, 50_000), // capped at the maximum
            (50_000, 2_000_000, false, 25_000), // a long wait (a provider thinking): halve
            (10_000, 2_000_000, false, 5_000),
            (5_000, 2_000_000, false, 0), // and stop
            (0, 2_000_000, false, 0),
            // Another task wanted the CPU: shrink however soon the wake-up came.
            (50_000, 20_000, true, 25_000),
            (10_000, 1_000, true, 5_000),
            (5_000, 1_000, true, 0),
            (0, 1_000, true, 0),
        ];
        for (window, waited, contended, next) in cases {
            let got = next_window(window, waited, max, contended);
            assert_eq!(got, next, "{window} {waited} {contended}");
        }
    }

    #[test]
    fn polling_stops_at_the_first_event_and_leaves_it_for_the_runtime() {
        let (ep, ev) = epoll_with_eventfd();
        // Nothing pending: gives up once the spin is over.
        assert_ne!(wait_ready(&[ep], Duration::from_millis(2)), Polled::Ready);
        // SAFETY: writes 8 bytes from a valid u64 to the eventfd.
        assert_eq!(
            unsafe { libc::write(ev, (&1u64 as *const u64).cast(), 8) },
            8
        );
        // Pending: returns at once, however long the spin (a 10-minute spin would hang the test).
        assert_eq!(wait_ready(&[ep], Duration::from_secs(600)), Polled::Ready);
        // Still there for the real wait: polling consumed nothing.
        let mut out = [libc::epoll_event { events: 0, u64: 0 }];
        // SAFETY: `out` holds one event; zero timeout.
        assert_eq!(unsafe { libc::epoll_wait(ep, out.as_mut_ptr(), 1, 0) }, 1);
        // SAFETY: closing descriptors this test opened.
        unsafe {
            libc::close(ev);
            libc::close(ep);
        }
    }

    #[test]
    fn reads_the_running_count_from_loadavg() {
        let cases: [(&[u8], Option<usize>); 5] = [
            (b"0.20 0.18 0.12 3/250 1234\n", Some(3)),
            (b"12.00 9.50 4.10 17/1024 99", Some(17)),
            (b"0.20 0.18 0.12 3 1234", None),
            (b"0.20 0.18", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                running_tasks(line),
                want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        // This machine's, if it has one: at least this thread is running.
        if let Ok(real) = std::fs::read("/proc/loadavg") {
            assert!(running_tasks(&real).is_some_and(|n| n >= 1));
        }
    }

    #[test]
    fn polling_gives_way_when_another_task_wants_the_cpu() {
        // Both threads on this CPU: the busy one is runnable whenever the poller yields.
        // SAFETY: sched_getcpu has no preconditions; the cpu_set_t is zeroed and then filled.
        let one_cpu = unsafe {
            let cpu = libc::sched_getcpu();
            assert!(cpu >= 0);
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            set
        };
        let pin = move || {
            // SAFETY: pins the calling thread to a set holding a CPU it may run on.
            assert_eq!(
                unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&one_cpu), &one_cpu) },
                0
            );
        };
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let busy = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                pin();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        pin();
        let (ep, ev) = epoll_with_eventfd();
        // Nothing will arrive: without giving way this would poll for the whole 5 s and be Quiet.
        let polled = wait_ready(&[ep], Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
        assert_eq!(polled, Polled::Contended);
        // SAFETY: closing descriptors this test opened.
        unsafe {
            libc::close(ev);
            libc::close(ep);
        }
    }

    #[test]
    fn a_spinning_runtime_finds_its_epoll_descriptor_and_still_runs_timers_and_io() {
        let rt = serving_runtime(Duration::from_micros(50)).unwrap();
        rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (accepted, connected) =
                tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
            assert!(accepted.is_ok() && connected.is_ok());
        });
        assert!(!eventpoll_fds().is_empty());
    }
}
