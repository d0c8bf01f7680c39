//! The request-log pipeline of a node: a bounded queue the request path drops records into
//! without waiting, and one worker that builds, batches and ships them to the control plane.
//!
//! Batches are kept until the control plane acks them after commit, and every unacked batch is
//! resent, in order, after a reconnect (at-least-once; ingest is idempotent on the log id). Both
//! the queue and the unacked buffer are bounded; what does not fit is counted, never waited for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use weir_proto::logs::log_ingest_client::LogIngestClient;
use weir_proto::logs::{BatchAck, LogBatch, RequestLog};

use crate::config_stream::{connect, token_interceptor, Backoff};
use crate::request_record::RequestRecord;
use crate::settings::Settings;

/// Counters of the pipeline, read by `/readyz` and tests.
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Records accepted into the queue.
    pub enqueued: AtomicU64,
    /// Records dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Records dropped because the unacked buffer was full.
    pub dropped_buffer_full: AtomicU64,
    /// Records the control plane acked (inserted or duplicate).
    pub acked: AtomicU64,
    /// Records the control plane said it can never write.
    pub rejected: AtomicU64,
    /// Records waiting in the unacked buffer.
    pub buffered: AtomicU64,
    /// Records still unacked when a shutdown's drain time ran out.
    pub dropped_shutdown: AtomicU64,
}

/// The request path's handle: `submit` never waits.
#[derive(Clone)]
pub struct LogQueue {
    tx: mpsc::Sender<RequestRecord>,
    counters: Arc<LogCounters>,
    shutdown: Arc<watch::Sender<bool>>,
    worker_done: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

impl LogQueue {
    /// Hands a record over, or counts it as dropped if the queue is full.
    pub fn submit(&self, rec: RequestRecord) {
        match self.tx.try_send(rec) {
            Ok(()) => {
                self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The pipeline's counters.
    pub fn counters(&self) -> &Arc<LogCounters> {
        &self.counters
    }

    /// Stops taking records and ships what it holds, for at most the configured drain time;
    /// whatever is still unacked then is counted in `dropped_shutdown`.
    pub async fn close(&self) {
        let _ = self.shutdown.send(true);
        let done = self.worker_done.lock().expect("worker lock").take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

/// Creates the queue and starts its worker.
pub fn start(settings: Arc<Settings>) -> LogQueue {
    let (tx, rx) = mpsc::channel(settings.log_queue_records.max(1));
    let counters = Arc::new(LogCounters::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let worker = Worker::new(settings, counters.clone());
    // The worker parses, redacts and encodes every record: real CPU work. It runs on a thread
    // of its own, at a lower priority, so it never holds up a request-serving worker thread;
    // the kernel hands it whatever CPU the proxy leaves.
    std::thread::Builder::new()
        .name("weir-log-worker".into())
        .spawn(move || {
            lower_priority();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("log worker runtime");
            rt.block_on(worker.run(rx, shutdown_rx));
            let _ = done_tx.send(());
        })
        .expect("spawning the log worker thread");
    LogQueue {
        tx,
        counters,
        shutdown: Arc::new(shutdown),
        worker_done: Arc::new(std::sync::Mutex::new(Some(done_rx))),
    }
}

/// Nice value of the log worker thread (higher is lower priority).
const WORKER_NICE: i32 = 10;

fn lower_priority() {
    // On Linux `setpriority(PRIO_PROCESS, 0, …)` applies to the calling thread only.
    // SAFETY: plain syscall on the current thread; no memory is shared.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WORKER_NICE) };
    if rc != 0 {
        tracing::debug!("could not lower the log worker's priority");
    }
}

struct Connection {
    tx: mpsc::Sender<LogBatch>,
    acks: tonic::Streaming<BatchAck>,
}

struct Worker {
    settings: Arc<Settings>,
    counters: Arc<LogCounters>,
    /// Sealed batches not yet acked, oldest first.
    unacked: VecDeque<LogBatch>,
    /// Records across `unacked`.
    unacked_records: usize,
    /// How many of `unacked` were sent on the current connection.
    sent: usize,
    next_sequence: u64,
    building: Vec<RequestLog>,
    building_since: Option<Instant>,
    conn: Option<Connection>,
    backoff: Backoff,
    retry_at: Instant,
    /// Which control-plane replica the next connection tries.
    replica: usize,
}

/// Batches in flight on a connection before waiting for acks.
const WINDOW: usize = 8;

impl Worker {
    fn new(settings: Arc<Settings>, counters: Arc<LogCounters>) -> Self {
        Worker {
            settings,
            counters,
            unacked: VecDeque::new(),
            unacked_records: 0,
            sent: 0,
            next_sequence: 1,
            building: Vec::new(),
            building_since: None,
            conn: None,
            backoff: Backoff::default(),
            retry_at: Instant::now(),
            replica: 0,
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<RequestRecord>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut input_open = true;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.conn.is_none() && !self.unacked.is_empty() && Instant::now() >= self.retry_at {
                self.reconnect().await;
            }
            self.send_window().await;
            if !input_open && self.building.is_empty() && self.unacked.is_empty() {
                return;
            }
            if drain_deadline.is_some_and(|d| Instant::now() >= d) {
                let left = self.unacked_records + self.building.len();
                self.counters
                    .dropped_shutdown
                    .fetch_add(left as u64, Ordering::Relaxed);
                if left > 0 {
                    tracing::warn!(records = left, "request logs still unacked at shutdown");
                }
                return;
            }
            let seal_at = self
                .building_since
                .map(|t| t + self.settings.log_batch_delay);
            let retry_at =
                (self.conn.is_none() && !self.unacked.is_empty()).then_some(self.retry_at);
            tokio::select! {
                rec = rx.recv(), if input_open => match rec {
                    Some(rec) => {
                        self.building.push(rec.into_log());
                        self.building_since.get_or_insert_with(Instant::now);
                        if self.building.len() >= self.settings.log_batch_records {
                            self.seal();
                        }
                    }
                    None => {
                        input_open = false;
                        self.seal();
                    }
                },
                _ = sleep_until(seal_at) => self.seal(),
                ack = next_ack(&mut self.conn) => self.on_ack(ack),
                _ = sleep_until(retry_at) => {}
                _ = sleep_until(drain_deadline) => {}
                _ = shutdown.changed(), if input_open => {
                    // Take what the request path already handed over, then stop taking more.
                    while let Ok(rec) = rx.try_recv() {
                        self.building.push(rec.into_log());
                    }
                    rx.close();
                    input_open = false;
                    self.seal();
                    drain_deadline = Some(Instant::now() + self.settings.log_drain_timeout);
                }
            }
        }
    }

    fn seal(&mut self) {
        self.building_since = None;
        if self.building.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.building);
        if self.unacked_records + records.len() > self.settings.log_buffer_records {
            // The control plane has been away long enough to fill the buffer: count, don't wait.
            self.counters
                .dropped_buffer_full
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = records.len(),
                "request-log buffer full while the control plane is unreachable; records dropped"
            );
            return;
        }
        self.unacked_records += records.len();
        self.counters
            .buffered
            .store(self.unacked_records as u64, Ordering::Relaxed);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.unacked.push_back(LogBatch { sequence, records });
    }

    async fn reconnect(&mut self) {
        let urls = self.settings.control_planes();
        let url = urls
            .get(self.replica % urls.len().max(1))
            .copied()
            .unwrap_or_default()
            .to_string();
        // The next attempt, if this one fails, goes to the next replica.
        self.replica += 1;
        match open(&self.settings, &url).await {
            Ok(conn) => {
                self.conn = Some(conn);
                self.sent = 0;
                self.backoff.reset();
            }
            Err(e) => {
                tracing::debug!(error = %e, "log ingest unreachable; keeping batches");
                self.retry_at = Instant::now() + self.backoff.next_delay();
            }
        }
    }

    async fn send_window(&mut self) {
        let Some(conn) = &self.conn else { return };
        while self.sent < self.unacked.len() && self.sent < WINDOW {
            let batch = self.unacked[self.sent].clone();
            if conn.tx.send(batch).await.is_err() {
                self.drop_connection();
                return;
            }
            self.sent += 1;
        }
    }

    fn on_ack(&mut self, ack: Option<BatchAck>) {
        let Some(ack) = ack else {
            self.drop_connection();
            return;
        };
        while let Some(front) = self.unacked.front() {
            if front.sequence > ack.sequence {
                break;
            }
            let b = self.unacked.pop_front().expect("front exists");
            self.sent = self.sent.saturating_sub(1);
            self.unacked_records -= b.records.len();
        }
        self.counters
            .acked
            .fetch_add((ack.inserted + ack.duplicates) as u64, Ordering::Relaxed);
        self.counters
            .rejected
            .fetch_add(ack.rejected as u64, Ordering::Relaxed);
        self.counters
            .buffered
            .store(self.unacked_records as u64, Ordering::Relaxed);
    }

    fn drop_connection(&mut self) {
        self.conn = None;
        self.sent = 0;
        self.retry_at = Instant::now() + self.backoff.next_delay();
    }
}

async fn open(
    settings: &Settings,
    url: &str,
) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
    let channel = connect(url, settings.control_plane_ca.as_deref()).await?;
    let mut client =
        LogIngestClient::with_interceptor(channel, token_interceptor(&settings.dataplane_token))
            .max_encoding_message_size(64 * 1024 * 1024);
    let (tx, rx) = mpsc::channel(WINDOW);
    let acks = client.ingest(ReceiverStream::new(rx)).await?.into_inner();
    Ok(Connection { tx, acks })
}

async fn next_ack(conn: &mut Option<Connection>) -> Option<BatchAck> {
    match conn {
        Some(c) => match c.acks.message().await {
            Ok(Some(ack)) => Some(ack),
            Ok(None) => None,
            Err(status) => {
                tracing::warn!(%status, "log ingest stream failed; will resend unacked batches");
                None
            }
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
