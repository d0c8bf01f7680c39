//! The request-log pipeline of a node: a bounded queue the request path drops records into
//! without waiting, and one worker that builds, batches and ships them to the control plane.
//!
//! Batches are kept until the control plane acks them after commit, and every unacked batch is
//! resent, in order, after a reconnect (at-least-once; ingest is idempotent on the log id). Both
//! the queue and the unacked buffer are bounded; what does not fit is counted, never waited for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use weir_proto::logs::{BatchAck, RequestLog};

use crate::config_stream::{connect, token_interceptor, Backoff};
use crate::limits::SpendTicket;
use crate::otlp_export::ExportCounters;
use crate::request_record::RequestRecord;
use crate::settings::Settings;
use crate::telemetry_sinks::Telemetry;

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
    /// Batches sealed for the control plane (records over batches: the mean batch size).
    pub batches: AtomicU64,
    /// The most records the worker has found waiting in the queue at once: how close the node
    /// has come to `dropped_queue_full`.
    pub queue_peak: AtomicU64,
}

/// The queue between the request path and the worker.
///
/// Waking a sleeping thread costs the waker a syscall and a cross-core hop; doing that for
/// every request was the largest single cost of logging on the request path. So the worker
/// announces when it is idle, only the first record after that wakes it, and a busy worker
/// collects what arrived on a short tick instead of being woken per record.
struct Inbox<T> {
    records: Mutex<Waiting<T>>,
    capacity: usize,
    /// Bound on the bodies and events the waiting records hold (see `RequestRecord::held_bytes`).
    max_bytes: usize,
    /// The worker found the inbox empty and waits for `wake`.
    idle: AtomicBool,
    wake: Notify,
    /// Set at shutdown: later records are counted as dropped.
    closed: AtomicBool,
}

/// The records in an inbox and the bytes they hold.
struct Waiting<T> {
    records: Vec<T>,
    bytes: usize,
}

/// How long a busy worker lets records gather before taking them.
const GATHER: Duration = Duration::from_millis(2);

impl<T> Inbox<T> {
    fn new(capacity: usize, max_bytes: usize) -> Self {
        Inbox {
            records: Mutex::new(Waiting {
                records: Vec::with_capacity(capacity.min(4096)),
                bytes: 0,
            }),
            capacity,
            max_bytes,
            idle: AtomicBool::new(false),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// Adds a record holding `bytes` unless the inbox is full (by records or bytes) or closed;
    /// never waits for the worker.
    fn push(&self, rec: T, bytes: usize) -> bool {
        {
            let mut waiting = self.records.lock().unwrap_or_else(|e| e.into_inner());
            let full = waiting.records.len() >= self.capacity
                || waiting.bytes.saturating_add(bytes) > self.max_bytes;
            if full || self.closed.load(Ordering::Relaxed) {
                return false;
            }
            waiting.records.push(rec);
            waiting.bytes += bytes;
        }
        if self.idle.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        true
    }

    /// Moves every waiting record into `into`.
    fn take(&self, into: &mut Vec<T>) {
        let mut waiting = self.records.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut waiting.records, into);
        waiting.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .records
            .is_empty()
    }
}

/// The request path's handle: `submit` never waits.
#[derive(Clone)]
pub struct LogQueue {
    inbox: Arc<Inbox<RequestRecord>>,
    counters: Arc<LogCounters>,
    spans: Arc<ExportCounters>,
    shutdown: Arc<watch::Sender<bool>>,
    worker_done: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

impl LogQueue {
    /// Hands a record over, or counts it as dropped if the queue is full.
    pub fn submit(&self, rec: RequestRecord) {
        let bytes = rec.held_bytes();
        if self.inbox.push(rec, bytes) {
            self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The pipeline's counters.
    pub fn counters(&self) -> &Arc<LogCounters> {
        &self.counters
    }

    /// The span export's counters (all zero when nothing is exported).
    pub fn span_counters(&self) -> &Arc<ExportCounters> {
        &self.spans
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
pub fn start(
    settings: Arc<Settings>,
    tls: rustls::ClientConfig,
    config: Arc<crate::config_stream::ConfigState>,
) -> LogQueue {
    let inbox = Arc::new(Inbox::new(
        settings.log_queue_records.max(1),
        settings.log_queue_bytes,
    ));
    let nice = settings.log_worker_nice;
    let counters = Arc::new(LogCounters::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let spans = Arc::new(ExportCounters::default());
    let worker = Worker::new(settings, counters.clone());
    let exporter_parts = (tls, spans.clone(), config);
    let inbox_w = inbox.clone();
    // The worker parses, redacts and encodes every record: real CPU work. It runs on a thread
    // of its own, by default at a lower priority (`log_worker_nice`), so it never holds up a
    // request-serving thread; the kernel hands it whatever CPU the proxy leaves.
    std::thread::Builder::new()
        .name("weir-log-worker".into())
        .spawn(move || {
            lower_priority(nice);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("log worker runtime");
            rt.block_on(worker.run(&inbox_w, shutdown_rx, exporter_parts));
            let _ = done_tx.send(());
        })
        .expect("spawning the log worker thread");
    LogQueue {
        inbox,
        counters,
        spans,
        shutdown: Arc::new(shutdown),
        worker_done: Arc::new(std::sync::Mutex::new(Some(done_rx))),
    }
}

/// Sets the calling thread's nice value; 0 leaves it as it is.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    // On Linux `setpriority(PRIO_PROCESS, 0, …)` applies to the calling thread only.
    // SAFETY: plain syscall on the current thread; no memory is shared.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::debug!("could not lower the log worker's priority");
    }
}

struct Connection {
    tx: mpsc::Sender<Bytes>,
    acks: tonic::Streaming<BatchAck>,
}

/// A sealed batch, encoded once: sending (and resending after a reconnect) copies bytes
/// instead of cloning every record and encoding it again.
struct Sealed {
    sequence: u64,
    records: usize,
    /// The `LogBatch` message.
    encoded: Bytes,
}

/// The method `PreEncoded` serves.
const INGEST_PATH: &str = "/weir.logs.v1.LogIngest/Ingest";

/// The `LogIngest/Ingest` codec with requests already encoded as `LogBatch` messages.
#[derive(Debug, Clone, Copy, Default)]
struct PreEncoded;

/// Writes a pre-encoded message as is.
#[derive(Debug)]
struct RawEncoder;

/// Reads acks.
#[derive(Debug)]
struct AckDecoder;

impl Codec for PreEncoded {
    type Encode = Bytes;
    type Decode = BatchAck;
    type Encoder = RawEncoder;
    type Decoder = AckDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for AckDecoder {
    type Item = BatchAck;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<BatchAck>, Status> {
        BatchAck::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("undecodable batch ack: {e}")))
    }
}

struct Worker {
    settings: Arc<Settings>,
    counters: Arc<LogCounters>,
    /// Sealed batches not yet acked, oldest first.
    unacked: VecDeque<Sealed>,
    /// Records across `unacked`.
    unacked_records: usize,
    /// How many of `unacked` were sent on the current connection.
    sent: usize,
    next_sequence: u64,
    /// The batch being built, encoded as its records arrive.
    building: BatchBuf,
    /// Budget spend of `building`'s records, settled when their batch is acked.
    building_spend: Vec<SpendTicket>,
    /// The same for each batch of `unacked`, in the same order.
    unacked_spend: VecDeque<Vec<SpendTicket>>,
    building_since: Option<Instant>,
    conn: Option<Connection>,
    backoff: Backoff,
    retry_at: Instant,
    /// Which control-plane replica the next connection tries.
    replica: usize,
    /// OTLP exporters (started on the worker's runtime in `run`).
    telemetry: Option<Telemetry>,
    /// The node's config, for the pushed telemetry sinks.
    config: Option<Arc<crate::config_stream::ConfigState>>,
}

/// When a partial batch begun at `since` is sealed. While the control plane has acked every
/// earlier batch (`idle`), soon: at low load recording then runs in small steps, whose bursts
/// on a CPU shared with Postgres stay short. While batches await acks, the pipeline is the
/// bottleneck and the batch grows towards full size, where its fixed cost in the control plane
/// and Postgres (~1.2 ms of CPU a batch in the benchmark) is spread over many records. Like
/// Nagle's algorithm, the acks clock the batch size; no load estimate is needed.
fn seal_deadline(since: Instant, idle: bool, settings: &Settings) -> Instant {
    let idle_delay = settings.log_batch_idle_delay;
    if idle && !idle_delay.is_zero() {
        since + idle_delay.min(settings.log_batch_delay)
    } else {
        since + settings.log_batch_delay
    }
}

/// Encoded size a batch may reach before it is sealed whatever its record count: a batch of
/// records with large captured payloads stays far below the control plane's 64 MiB message
/// limit.
const BATCH_MAX_BYTES: usize = 8 * 1024 * 1024;

/// A `LogBatch` being built, already encoded: each record is encoded when it arrives (a
/// `records` field) and dropped, and the sequence is appended when the batch is sealed
/// (protobuf allows fields in any order). No record is moved or kept after it is built, and
/// the batch's size is known exactly.
#[derive(Debug, Default)]
struct BatchBuf {
    encoded: Vec<u8>,
    records: usize,
}

impl BatchBuf {
    fn push(&mut self, log: &RequestLog) {
        prost::encoding::message::encode(2, log, &mut self.encoded);
        self.records += 1;
    }

    /// The `LogBatch` bytes with `sequence`, and how many records they hold; leaves the
    /// builder empty, with room for a batch like this one.
    fn seal(&mut self, sequence: u64) -> (Vec<u8>, usize) {
        prost::encoding::uint64::encode(1, &sequence, &mut self.encoded);
        let room = self.encoded.len();
        let mut encoded = std::mem::replace(&mut self.encoded, Vec::with_capacity(room));
        // A small batch after a large one must not hold the large one's room while unacked.
        if encoded.capacity() > 2 * encoded.len() {
            encoded.shrink_to_fit();
        }
        (encoded, std::mem::take(&mut self.records))
    }

    /// Drops what was built; returns how many records it held.
    fn discard(&mut self) -> usize {
        self.encoded.clear();
        std::mem::take(&mut self.records)
    }
}

/// Whether a batch of `records` records and `bytes` encoded bytes is sealed now.
fn batch_full(records: usize, bytes: usize, settings: &Settings) -> bool {
    records >= settings.log_batch_records || bytes >= BATCH_MAX_BYTES
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
            building: BatchBuf::default(),
            building_spend: Vec::new(),
            unacked_spend: VecDeque::new(),
            building_since: None,
            conn: None,
            backoff: Backoff::default(),
            retry_at: Instant::now(),
            replica: 0,
            telemetry: None,
            config: None,
        }
    }

    async fn run(
        mut self,
        inbox: &Inbox<RequestRecord>,
        mut shutdown: watch::Receiver<bool>,
        (tls, span_counters, config): (
            rustls::ClientConfig,
            Arc<ExportCounters>,
            Arc<crate::config_stream::ConfigState>,
        ),
    ) {
        // The exporters' tasks live on this thread's runtime, like the shipping.
        let service = self
            .settings
            .otel
            .as_ref()
            .map_or("weir-data-plane", |o| o.service_name.as_str())
            .to_string();
        let resource =
            crate::genai_trace::resource(&service, &self.settings.node_id, &self.settings.group);
        self.telemetry = Some(Telemetry::new(
            self.settings.otel.clone(),
            resource,
            tls,
            span_counters,
        ));
        self.config = Some(config);
        let metrics_every = self.telemetry.as_ref().map(|t| t.metrics_every);
        let mut next_metrics = metrics_every.map(|d| Instant::now() + d);
        let mut input_open = true;
        let mut drain_deadline: Option<Instant> = None;
        let mut taken: Vec<RequestRecord> = Vec::new();
        // While busy, the next time to take from the inbox; `None` when idle (woken by a record).
        let mut next_take: Option<Instant> = None;
        loop {
            if input_open && next_take.is_none_or(|t| Instant::now() >= t) {
                inbox.take(&mut taken);
                if taken.is_empty() {
                    next_take = None;
                    inbox.idle.store(true, Ordering::Release);
                    // A record may have landed between the take and the flag.
                    if !inbox.is_empty() && inbox.idle.swap(false, Ordering::AcqRel) {
                        continue;
                    }
                } else {
                    self.counters
                        .queue_peak
                        .fetch_max(taken.len() as u64, Ordering::Relaxed);
                    for rec in taken.drain(..) {
                        self.add(rec);
                    }
                    next_take = Some(Instant::now() + GATHER);
                }
            }
            if self.conn.is_none() && !self.unacked.is_empty() && Instant::now() >= self.retry_at {
                self.reconnect().await;
            }
            self.send_window().await;
            if !input_open && self.building.records == 0 && self.unacked.is_empty() {
                return;
            }
            if drain_deadline.is_some_and(|d| Instant::now() >= d) {
                let left = self.unacked_records + self.building.records;
                self.counters
                    .dropped_shutdown
                    .fetch_add(left as u64, Ordering::Relaxed);
                if left > 0 {
                    tracing::warn!(records = left, "request logs still unacked at shutdown");
                }
                return;
            }
            // Nothing unacked: the control plane and Postgres have caught up (or a connection
            // is yet to open; while one is down, batches wait unacked and grow).
            let seal_at = self
                .building_since
                .map(|since| seal_deadline(since, self.unacked.is_empty(), &self.settings));
            let retry_at =
                (self.conn.is_none() && !self.unacked.is_empty()).then_some(self.retry_at);
            tokio::select! {
                _ = inbox.wake.notified(), if input_open && next_take.is_none() => {}
                _ = sleep_until(next_metrics) => {
                    next_metrics = metrics_every.map(|d| Instant::now() + d);
                    if let Some(t) = &mut self.telemetry {
                        t.export_metrics(&self.counters, self.config.as_deref());
                    }
                }
                _ = sleep_until(next_take), if input_open => {}
                _ = sleep_until(seal_at) => self.seal(),
                ack = next_ack(&mut self.conn) => self.on_ack(ack),
                _ = sleep_until(retry_at) => {}
                _ = sleep_until(drain_deadline) => {}
                _ = shutdown.changed(), if input_open => {
                    // Take what the request path already handed over, then stop taking more.
                    inbox.closed.store(true, Ordering::Relaxed);
                    inbox.take(&mut taken);
                    for rec in taken.drain(..) {
                        self.add(rec);
                    }
                    input_open = false;
                    self.seal();
                    drain_deadline = Some(Instant::now() + self.settings.log_drain_timeout);
                }
            }
        }
    }

    fn add(&mut self, rec: RequestRecord) {
        let built = rec.into_log();
        if let (Some(t), Some(config)) = (&mut self.telemetry, &self.config) {
            t.sync(&config.current.load().sinks);
            t.record(&built);
        }
        self.building.push(&built.log);
        self.building_spend.extend(built.spend);
        self.building_since.get_or_insert_with(Instant::now);
        if batch_full(
            self.building.records,
            self.building.encoded.len(),
            &self.settings,
        ) {
            self.seal();
        }
    }

    fn seal(&mut self) {
        self.building_since = None;
        let records = self.building.records;
        if records == 0 {
            return;
        }
        let spend = std::mem::take(&mut self.building_spend);
        if self.unacked_records + records > self.settings.log_buffer_records {
            self.building.discard();
            // These ledger rows will never exist: their spend leaves the local count with the
            // next fleet sum, as it would have after a commit.
            settle(spend);
            // The control plane has been away long enough to fill the buffer: count, don't wait.
            self.counters
                .dropped_buffer_full
                .fetch_add(records as u64, Ordering::Relaxed);
            tracing::warn!(
                dropped = records,
                "request-log buffer full while the control plane is unreachable; records dropped"
            );
            return;
        }
        self.unacked_records += records;
        self.counters
            .buffered
            .store(self.unacked_records as u64, Ordering::Relaxed);
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        let (encoded, records) = self.building.seal(sequence);
        self.unacked.push_back(Sealed {
            sequence,
            records,
            encoded: Bytes::from(encoded),
        });
        self.unacked_spend.push_back(spend);
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
            let batch = self.unacked[self.sent].encoded.clone();
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
            settle(self.unacked_spend.pop_front().unwrap_or_default());
            self.sent = self.sent.saturating_sub(1);
            self.unacked_records -= b.records;
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

fn settle(spend: Vec<SpendTicket>) {
    if spend.is_empty() {
        return;
    }
    let now = crate::limits::now_ms();
    for t in spend {
        t.settle(now);
    }
}

async fn open(
    settings: &Settings,
    url: &str,
) -> Result<Connection, Box<dyn std::error::Error + Send + Sync>> {
    let channel = connect(url, settings.control_plane_ca.as_deref()).await?;
    let service = tonic::service::interceptor::InterceptedService::new(
        channel,
        token_interceptor(&settings.dataplane_token),
    );
    let mut grpc = tonic::client::Grpc::new(service).max_encoding_message_size(64 * 1024 * 1024);
    grpc.ready().await?;
    let (tx, rx) = mpsc::channel(WINDOW);
    let acks = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(INGEST_PATH),
            PreEncoded,
        )
        .await?
        .into_inner();
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::logs::LogBatch;

    #[test]
    fn a_batch_is_sealed_soon_only_while_nothing_awaits_an_ack() {
        let since = Instant::now();
        let ms = Duration::from_millis;
        let with = |idle_delay: Duration, delay: Duration| Settings {
            log_batch_idle_delay: idle_delay,
            log_batch_delay: delay,
            ..Settings::new("http://127.0.0.1:1", "t")
        };
        // (idle delay, batch delay, nothing unacked, sealed after)
        let cases = [
            (ms(5), ms(100), true, ms(5)),
            (ms(5), ms(100), false, ms(100)),
            // Off: only the batch delay (and the size) seal.
            (ms(0), ms(100), true, ms(100)),
            // Never later than the batch delay.
            (ms(50), ms(20), true, ms(20)),
            (ms(50), ms(20), false, ms(20)),
        ];
        for (idle_delay, delay, idle, after) in cases {
            assert_eq!(
                seal_deadline(since, idle, &with(idle_delay, delay)),
                since + after,
                "idle delay {idle_delay:?}, delay {delay:?}, idle {idle}"
            );
        }
    }

    #[test]
    fn a_batch_is_sealed_by_its_record_count_or_its_size() {
        let settings = Settings {
            log_batch_records: 2048,
            ..Settings::new("http://127.0.0.1:1", "t")
        };
        let summary = RequestLog::default();
        let payloads = RequestLog {
            request_payload: vec![b'x'; 64 * 1024],
            response_payload: vec![b'y'; 64 * 1024],
            ..RequestLog::default()
        };
        // (records, each like, sealed)
        let cases = [
            (1, &summary, false),
            (2047, &summary, false),
            (2048, &summary, true),
            // Records with the largest default payloads: sealed long before 2,048 of them
            // (which would be 270 MB, past the control plane's 64 MiB limit).
            (63, &payloads, false),
            (64, &payloads, true),
        ];
        for (records, like, sealed) in cases {
            let mut batch = BatchBuf::default();
            for _ in 0..records {
                batch.push(like);
            }
            assert_eq!(
                batch_full(batch.records, batch.encoded.len(), &settings),
                sealed,
                "{records} records"
            );
        }
    }

    #[test]
    fn a_batch_encoded_record_by_record_reads_as_the_whole_message() {
        let log = |id: &str, payload: &[u8]| RequestLog {
            request_id: id.into(),
            model_key: "gpt".into(),
            request_payload: payload.to_vec(),
            ..RequestLog::default()
        };
        // (sequence, records)
        let cases: [(u64, Vec<RequestLog>); 3] = [
            (1, vec![log("a", b"")]),
            (
                7,
                vec![log("a", b"{}"), log("b", &[0u8; 300]), log("", b"")],
            ),
            (u64::MAX, vec![RequestLog::default(); 3]),
        ];
        let mut batch = BatchBuf::default();
        for (sequence, records) in cases {
            for r in &records {
                batch.push(r);
            }
            let (encoded, count) = batch.seal(sequence);
            assert_eq!(count, records.len());
            let expected = LogBatch { sequence, records };
            assert_eq!(
                LogBatch::decode(encoded.as_slice()).unwrap(),
                expected,
                "sequence {sequence}"
            );
            assert_eq!((batch.records, batch.encoded.len()), (0, 0), "reused empty");
        }
        // After a large batch, a small one is sealed without the large one's room.
        batch.push(&log("large", &[7u8; 1 << 20]));
        let (large, _) = batch.seal(8);
        batch.push(&log("small", b""));
        let (small, _) = batch.seal(9);
        assert!(large.len() > 1 << 20);
        assert!(
            small.capacity() <= 2 * small.len(),
            "{} bytes in {}",
            small.len(),
            small.capacity()
        );
        batch.push(&log("dropped", b""));
        assert_eq!(batch.discard(), 1);
        assert!(batch.encoded.is_empty());
    }

    #[test]
    fn pre_encoded_batches_go_to_the_generated_method() {
        assert_eq!(
            INGEST_PATH,
            format!(
                "/{}/Ingest",
                weir_proto::logs::log_ingest_server::SERVICE_NAME
            )
        );
    }

    #[tokio::test]
    async fn an_idle_worker_is_woken_once_and_a_full_inbox_refuses() {
        let inbox = Inbox::new(2, 1 << 20);
        // Busy worker: records land without a wake-up permit being stored.
        assert!(inbox.push(1u32, 10));
        let no_wake = tokio::time::timeout(Duration::from_millis(20), inbox.wake.notified()).await;
        assert!(
            no_wake.is_err(),
            "a busy worker must not be woken per record"
        );
        // Idle worker: the first record wakes it, the second does not store another wake.
        inbox.idle.store(true, Ordering::Release);
        assert!(inbox.push(2, 10));
        tokio::time::timeout(Duration::from_secs(1), inbox.wake.notified())
            .await
            .expect("the first record after idle wakes the worker");
        assert!(
            !inbox.push(3, 10),
            "over capacity is refused, not waited for"
        );
        let mut taken = Vec::new();
        inbox.take(&mut taken);
        assert_eq!(taken, vec![1, 2]);
        inbox.closed.store(true, Ordering::Relaxed);
        assert!(!inbox.push(4, 10), "a closed inbox refuses");
        assert!(inbox.is_empty());
    }

    #[test]
    fn an_inbox_is_bounded_by_the_bytes_its_records_hold() {
        let inbox = Inbox::new(100, 1000);
        // (bytes of the record, accepted): the bound counts what is waiting, not the records.
        let cases = [(600, true), (400, true), (1, false), (0, true)];
        for (i, (bytes, accepted)) in cases.into_iter().enumerate() {
            assert_eq!(
                inbox.push(i, bytes),
                accepted,
                "record {i} of {bytes} bytes"
            );
        }
        // Taking frees the bytes as well as the places.
        let mut taken = Vec::new();
        inbox.take(&mut taken);
        assert_eq!(taken, vec![0, 1, 3]);
        assert!(
            inbox.push(9, 1000),
            "an emptied inbox takes a record of the whole bound"
        );
        assert!(
            !inbox.push(10, usize::MAX),
            "a huge record is refused, not overflowed"
        );
    }
}
