//! The client-facing HTTP server and its request phases: identify (request id), authenticate,
//! read and parse only what routing needs, route, call the upstream, relay the answer, and hand
//! the record to the log queue.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::anthropic_translation::{self as at, ChatToMessagesStream, MessagesToChatStream};
use crate::body::{full, Body};
use crate::config_stream::ConfigState;
use crate::gateway_error::GatewayError;
use crate::genai_trace::AttemptTrace;
use crate::key_auth;
use crate::limits::{now_ms, Denial, Limiter, SubjectLimits};
use crate::log_shipper::LogQueue;
use crate::operation::{self, ClientBody, Operation, RequestFields, Shape};
use crate::request_record::{AttemptRecord, RecordGuard, RequestRecord};
use crate::route_plan::{self, AttemptResult};
use crate::settings::Settings;
use crate::snapshot::Provider;
use crate::sse_transcript::{event_data, SseFramer};
use crate::upstream::UpstreamClient;
use crate::{agent_session, caller_tags, trace_context};

/// Bytes of raw stream events a record keeps before it keeps only usage-bearing ones.
const STREAM_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// Shared state of the server.
pub struct Gateway {
    /// Live config.
    pub config: Arc<ConfigState>,
    /// Upstream client.
    pub upstream: UpstreamClient,
    /// Request-log queue.
    pub logs: LogQueue,
    /// Settings.
    pub settings: Arc<Settings>,
    /// Per-subject rate and budget counters of this node.
    pub limiter: Arc<Limiter>,
    /// Upstream TLS settings, for each serving thread's own pool.
    tls: rustls::ClientConfig,
    node_id: Arc<str>,
    group: Arc<str>,
}

impl Gateway {
    /// Shared state for a server.
    pub fn new(
        config: Arc<ConfigState>,
        tls: rustls::ClientConfig,
        upstream: UpstreamClient,
        logs: LogQueue,
        settings: Arc<Settings>,
    ) -> Self {
        Gateway {
            node_id: settings.node_id.as_str().into(),
            group: settings.group.as_str().into(),
            config,
            upstream,
            logs,
            settings,
            limiter: Arc::new(Limiter::default()),
            tls,
        }
    }

    /// A copy for one serving thread: shared config, log queue and limits, its own upstream
    /// pool (a pooled connection is driven by the runtime that opened it).
    fn for_thread(&self) -> Gateway {
        Gateway {
            config: self.config.clone(),
            upstream: crate::upstream::client(
                self.settings.upstream_connect_timeout,
                self.tls.clone(),
            ),
            logs: self.logs.clone(),
            settings: self.settings.clone(),
            limiter: self.limiter.clone(),
            tls: self.tls.clone(),
            node_id: self.node_id.clone(),
            group: self.group.clone(),
        }
    }
}

/// The serving threads.
pub struct Servers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    /// Waits for every serving thread to finish (after `stop` flipped).
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for t in self.threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

/// Starts one serving thread per listener.
///
/// Each thread runs its own single-threaded runtime and upstream pool, and a connection lives on
/// the thread whose listener accepted it (the kernel spreads connections over the SO_REUSEPORT
/// sockets). Nothing of a request then moves between threads: with one shared multi-threaded
/// runtime, the client side, the upstream connection and the relay of one request were woken on
/// different cores, which roughly doubled the proxy's latency at one connection (see
/// docs/benchmarks.md).
pub fn start_servers(
    gw: &Gateway,
    listeners: Vec<std::net::TcpListener>,
    stop: &watch::Receiver<bool>,
) -> std::io::Result<Servers> {
    let mut threads = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let gw = gw.for_thread();
        let spin = gw.settings.serve_idle_spin;
        let stop = stop.clone();
        let t = std::thread::Builder::new()
            .name(format!("weir-serve-{i}"))
            .spawn(move || {
                let rt = match crate::idle_spin::serving_runtime(spin) {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "could not start a serving runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    tokio::spawn(timer_heartbeat());
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(Arc::new(gw), listener, stop).await,
                        Err(e) => tracing::error!(error = %e, "could not register the listener"),
                    }
                });
            })?;
        threads.push(t);
    }
    Ok(Servers { threads })
}

/// Keeps a near timer in a serving runtime's timer wheel.
///
/// Tokio wakes its own driver (an eventfd write and one more epoll round trip) whenever a timer
/// is registered earlier than every timer already waiting. With nothing else pending, every
/// request's first-byte timeout was such a timer: one wasted syscall pair per request. A timer
/// that is always at most this far away makes the request timers (seconds or more) later than
/// the driver's next wake, so registering them costs nothing.
async fn timer_heartbeat() {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Accepts connections until `stop` flips, serving HTTP/1.1 and h2c on each.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let service = hyper::service::service_fn(move |req| handle(gw.clone(), req));
                let conn = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = stop.changed() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

/// Binds `count` client-facing sockets to one address with SO_REUSEPORT (port 0 picks one port
/// for all of them).
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count.max(1) {
        all.push(reuseport_listener(addr)?);
    }
    Ok(all)
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(&gw),
        (&Method::GET, "/metrics") => metrics(&gw),
        (&Method::GET, "/v1/models") => models(&gw, &req),
        (&Method::POST, path) if Operation::from_path(path).is_some() => {
            let op = Operation::from_path(path).expect("checked");
            proxy_operation(&gw, req, started, op).await
        }
        (m, p) => {
            let id = new_request_id();
            GatewayError::UnknownUrl(m.to_string(), p.to_string()).response(&id)
        }
    };
    Ok(resp)
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

fn readyz(gw: &Gateway) -> Response<Body> {
    let snap = gw.config.current.load();
    let ready = snap.is_complete();
    let c = gw.logs.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let detail = serde_json::json!({
        "ready": ready,
        "config_stream_connected": gw.config.connected.load(std::sync::atomic::Ordering::Relaxed),
        "config_source": if gw.config.from_disk.load(std::sync::atomic::Ordering::Relaxed) { "disk" } else { "control_plane" },
        "degraded": !gw.config.connected.load(std::sync::atomic::Ordering::Relaxed),
        "config_versions": {
            "providers": snap.version(weir_proto::config::ResourceType::Providers),
            "routes": snap.version(weir_proto::config::ResourceType::Routes),
            "api_keys": snap.version(weir_proto::config::ResourceType::ApiKeys),
            "payload_policy": snap.version(weir_proto::config::ResourceType::PayloadPolicy),
            "limits": snap.version(weir_proto::config::ResourceType::Limits),
            "pricing": snap.version(weir_proto::config::ResourceType::Pricing),
        },
        "config_nacks": load(&gw.config.nacks),
        "request_logs": {
            "enqueued": load(&c.enqueued),
            "acked": load(&c.acked),
            "buffered": load(&c.buffered),
            "dropped_queue_full": load(&c.dropped_queue_full),
            "dropped_buffer_full": load(&c.dropped_buffer_full),
            "dropped_shutdown": load(&c.dropped_shutdown),
            "rejected": load(&c.rejected),
            "batches": load(&c.batches),
            "queue_peak": load(&c.queue_peak),
        },
    });
    let mut r = Response::new(full(serde_json::to_vec(&detail).unwrap_or_default()));
    *r.status_mut() = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Node metrics in the Prometheus text format: config versions and NACKs, and the request-log
/// pipeline's counters. Labels are bounded (resource types, drop reasons).
fn metrics(gw: &Gateway) -> Response<Body> {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    use weir_proto::config::ResourceType as T;
    let snap = gw.config.current.load();
    let c = gw.logs.counters();
    let mut out = String::with_capacity(2048);
    out.push_str(
        "# HELP weir_config_version Config version held, per resource type (its counter).\n",
    );
    out.push_str("# TYPE weir_config_version gauge\n");
    for (t, name) in [
        (T::Providers, "providers"),
        (T::Routes, "routes"),
        (T::ApiKeys, "api_keys"),
        (T::PayloadPolicy, "payload_policy"),
        (T::Limits, "limits"),
        (T::Pricing, "pricing"),
    ] {
        let v: u64 = snap
            .version(t)
            .split('.')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let _ = writeln!(out, "weir_config_version{{type=\"{name}\"}} {v}");
    }
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    gauge(
        &mut out,
        "weir_config_nacks_total",
        "Config responses this node refused.",
        "counter",
        gw.config.nacks.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_config_stream_connected",
        "1 while the config stream is open.",
        "gauge",
        gw.config.connected.load(Relaxed) as u64,
    );
    gauge(
        &mut out,
        "weir_config_from_disk",
        "1 while serving a persisted config not yet confirmed.",
        "gauge",
        gw.config.from_disk.load(Relaxed) as u64,
    );
    gauge(
        &mut out,
        "weir_request_logs_enqueued_total",
        "Request logs handed to the log worker.",
        "counter",
        c.enqueued.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_request_logs_acked_total",
        "Request logs the control plane acked after commit.",
        "counter",
        c.acked.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_request_log_batches_total",
        "Request-log batches sealed for the control plane.",
        "counter",
        c.batches.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_request_log_queue_peak",
        "The most request logs found waiting for the log worker at once.",
        "gauge",
        c.queue_peak.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_request_logs_buffered",
        "Request logs waiting for an ack.",
        "gauge",
        c.buffered.load(Relaxed),
    );
    out.push_str("# HELP weir_request_logs_dropped_total Request logs dropped, by reason.\n");
    out.push_str("# TYPE weir_request_logs_dropped_total counter\n");
    for (reason, v) in [
        ("queue_full", c.dropped_queue_full.load(Relaxed)),
        ("buffer_full", c.dropped_buffer_full.load(Relaxed)),
        ("shutdown", c.dropped_shutdown.load(Relaxed)),
        ("rejected", c.rejected.load(Relaxed)),
    ] {
        let _ = writeln!(
            out,
            "weir_request_logs_dropped_total{{reason=\"{reason}\"}} {v}"
        );
    }
    let sp = gw.logs.span_counters();
    gauge(
        &mut out,
        "weir_spans_queued_total",
        "Spans handed to the OTLP exporter.",
        "counter",
        sp.queued.load(Relaxed),
    );
    gauge(
        &mut out,
        "weir_spans_exported_total",
        "Spans the OTLP collector accepted.",
        "counter",
        sp.exported.load(Relaxed),
    );
    out.push_str("# HELP weir_spans_dropped_total Spans not exported, by reason.\n");
    out.push_str("# TYPE weir_spans_dropped_total counter\n");
    for (reason, v) in [
        ("queue_full", sp.dropped_queue_full.load(Relaxed)),
        ("export_failed", sp.failed.load(Relaxed)),
    ] {
        let _ = writeln!(out, "weir_spans_dropped_total{{reason=\"{reason}\"}} {v}");
    }
    let mut r = Response::new(full(out));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// A request id for an answer that is not a request's (an unrouted path): 32 hex characters of
/// a UUIDv7, shaped like the ids minted for requests (their log ids, ADR 0014).
fn new_request_id() -> String {
    crate::request_record::time_ordered_id()
        .simple()
        .to_string()
}

/// The caller's `x-request-id` when acceptable, the request's log id (32 hex digits) when absent,
/// an error when malformed. A minted id is the log id, so one id names the request everywhere
/// and the request-id index only holds ids callers chose (migration 0021).
fn request_id(headers: &HeaderMap, log_id: uuid::Uuid) -> Result<String, GatewayError> {
    match headers.get("x-request-id") {
        None => Ok(log_id.simple().to_string()),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| weir_proto::request_id::is_acceptable(s))
            .map(str::to_string)
            .ok_or(GatewayError::InvalidHeader(
                "x-request-id",
                "it must be 1-128 characters of letters, digits and - _ . : /",
            )),
    }
}

fn models(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let snap = gw.config.current.load_full();
    let log_id = crate::request_record::time_ordered_id();
    let request_id = match request_id(req.headers(), log_id) {
        Ok(id) => id,
        Err(e) => return e.response(&log_id.simple().to_string()),
    };
    if !snap.is_complete() {
        return GatewayError::NotReady.response(&request_id);
    }
    let key = match key_auth::authenticate(&snap, req.headers(), now_ms()) {
        Ok(k) => k,
        Err(e) => return e.response(&request_id),
    };
    let mut ids: Vec<&str> = snap
        .routes
        .keys()
        .filter(|m| key.allowed_models.as_ref().is_none_or(|a| a.contains(*m)))
        .map(String::as_str)
        .collect();
    ids.sort_unstable();
    let data: Vec<serde_json::Value> = ids
        .iter()
        .map(
            |id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "weir"}),
        )
        .collect();
    let body = serde_json::json!({"object": "list", "data": data});
    let mut r = Response::new(full(serde_json::to_vec(&body).unwrap_or_default()));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    echo_request_id(r.headers_mut(), &request_id);
    r
}

fn echo_request_id(h: &mut HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        h.insert("x-request-id", v);
    }
}

/// A finished request's failure, answered and logged.
fn fail(guard: RecordGuard, e: GatewayError, request_id: &str, op: Operation) -> Response<Body> {
    guard.finish(e.status().as_u16(), e.outcome(), e.to_string());
    e.response_for(request_id, op.anthropic_client())
}

/// Every proxied operation: authenticate, parse what routing needs, try targets in order, and
/// relay the answering attempt.
async fn proxy_operation(
    gw: &Gateway,
    req: Request<Incoming>,
    started: Instant,
    op: Operation,
) -> Response<Body> {
    let snap = gw.config.current.load_full();
    let anthropic = op.anthropic_client();
    let log_id = crate::request_record::time_ordered_id();
    let request_id = match request_id(req.headers(), log_id) {
        Ok(id) => id,
        Err(e) => return e.response_for(&log_id.simple().to_string(), anthropic),
    };
    if !snap.is_complete() {
        return GatewayError::NotReady.response_for(&request_id, anthropic);
    }
    // Unauthenticated requests never reach an upstream, and are not logged as anyone's.
    let key = match key_auth::authenticate(&snap, req.headers(), now_ms()) {
        Ok(k) => k,
        Err(e) => return e.response_for(&request_id, anthropic),
    };
    let (parts, body) = req.into_parts();
    let mut guard = RecordGuard::new(
        RequestRecord::new(
            op.name(),
            log_id,
            request_id.clone(),
            started,
            key.clone(),
            snap.policy.clone(),
            parts.headers,
            gw.node_id.clone(),
            gw.group.clone(),
        ),
        gw.logs.clone(),
    );
    // The highest ratio of any exporter decides here; each sink applies its own on the worker
    // (a trace kept at one ratio is kept at every higher one).
    let ratio = gw
        .settings
        .otel
        .as_ref()
        .map(|o| o.sample_ratio)
        .into_iter()
        .chain(snap.sinks.iter().map(|s| s.settings.sample_ratio))
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    if let Some(ratio) = ratio {
        let rec = guard.rec();
        // A caller's x-request-id that is 32 hex digits names the trace (see trace_context).
        let caller_id = rec
            .request_headers
            .contains_key("x-request-id")
            .then_some(request_id.as_str());
        let ctx = trace_context::for_request(
            &rec.request_headers,
            caller_id,
            ratio,
            &mut rand::thread_rng(),
        );
        rec.trace = Some(ctx);
    }

    match caller_tags::parse(&guard.rec().request_headers) {
        Ok(tags) => guard.rec().tags = tags,
        Err(e) => {
            let e = GatewayError::InvalidHeaderValue(e.header, e.to_string());
            return fail(guard, e, &request_id, op);
        }
    }
    match agent_session::session(&guard.rec().request_headers) {
        Ok(session) => guard.rec().session = session,
        Err(e) => {
            let e = GatewayError::InvalidHeaderValue("x-weir-session", e.to_string());
            return fail(guard, e, &request_id, op);
        }
    }
    guard.rec().turn_kind = agent_session::turn_kind(&guard.rec().request_headers);

    let raw = match read_body(body, gw.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return fail(guard, e, &request_id, op),
    };
    guard.rec().request_body = detached(&raw);
    let fields: RequestFields<'_> = match serde_json::from_slice(&raw) {
        Ok(f) => f,
        Err(e) => {
            return fail(
                guard,
                GatewayError::InvalidJson(e.to_string()),
                &request_id,
                op,
            )
        }
    };
    let stream = match &fields.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b && op != Operation::Embeddings,
        Some(other) => {
            let e = GatewayError::InvalidParameter(
                "stream",
                format!("expected a boolean, got {other}"),
            );
            return fail(guard, e, &request_id, op);
        }
    };
    guard.rec().stream = stream;
    let Some(model) = fields.model.as_deref().filter(|m| !m.is_empty()) else {
        return fail(
            guard,
            GatewayError::MissingParameter("model"),
            &request_id,
            op,
        );
    };
    let model = model.to_string();
    guard.rec().model_key = model.clone();
    if let Some(allowed) = &key.allowed_models {
        if !allowed.contains(&model) {
            return fail(guard, GatewayError::ModelNotAllowed(model), &request_id, op);
        }
    }
    let Some(route) = snap.routes.get(&model).cloned() else {
        return fail(guard, GatewayError::ModelNotFound(model), &request_id, op);
    };
    // Capability: the model must serve the operation, and some target's provider must speak it.
    let eligible: Vec<bool> = route
        .targets
        .iter()
        .map(|t| {
            snap.providers
                .get(&t.provider_key)
                .is_none_or(|p| operation::shape(op, &p.kind).is_some())
        })
        .collect();
    if !route.serves(op.name()) || !eligible.contains(&true) {
        return fail(
            guard,
            GatewayError::UnsupportedOperation(model, op.name()),
            &request_id,
            op,
        );
    }
    // The node's own price: budgets, the spend metric and the span all use it. Checked before
    // the limits so a refused request uses none of them.
    let price = snap.price_at(&model, now_ms());
    if price.is_none() && route.policy.require_price {
        return fail(guard, GatewayError::ModelNotPriced(model), &request_id, op);
    }
    // Limits of the key, its user and its team, before any upstream call.
    let subjects: Vec<(String, Arc<SubjectLimits>)> = [
        ("key", key.id.as_str()),
        ("user", key.user_id.as_str()),
        ("team", key.team_id.as_str()),
    ]
    .iter()
    // Most fleets have few or no limits: skip building the subject names then.
    .filter(|(_, id)| !id.is_empty() && !snap.limits.is_empty())
    .filter_map(|(kind, id)| {
        let subject = format!("{kind}:{id}");
        snap.limits.get(&subject).map(|l| (subject, l.clone()))
    })
    .collect();
    if !subjects.is_empty() {
        let refs: Vec<(&str, &SubjectLimits)> = subjects
            .iter()
            .map(|(s, l)| (s.as_str(), l.as_ref()))
            .collect();
        if let Err(denial) = gw.limiter.admit(&refs, now_ms()) {
            let kind = |s: &str| match s.split(':').next() {
                Some("user") => "user",
                Some("team") => "team",
                _ => "key",
            };
            let e = match denial {
                Denial::Requests { subject, limit } => {
                    GatewayError::RateLimited(kind(&subject), limit, "requests")
                }
                Denial::Tokens { subject, limit } => {
                    GatewayError::RateLimited(kind(&subject), limit, "tokens")
                }
                Denial::Budget { subject, .. } => GatewayError::BudgetExceeded(kind(&subject)),
            };
            return fail(guard, e, &request_id, op);
        }
        let rec = guard.rec();
        rec.limits = subjects;
        rec.limiter = Some(gw.limiter.clone());
    }
    guard.rec().price = price;
    let client_wants_usage = fields
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let has_stream_options = fields.stream_options.is_some();
    drop(fields);

    let policy = route_plan::Policy::of(&route);
    let deadline = started + policy.total_timeout;
    let roll = rand::Rng::gen::<u64>(&mut rand::thread_rng());
    let order = route_plan::attempt_order(&route, &eligible, roll, policy.max_attempts);
    let mut body = ClientBody::new(raw);
    let mut last_failure = GatewayError::UpstreamUnavailable("no upstream attempt was made".into());

    for (n, idx) in order.iter().enumerate() {
        let is_last = n + 1 == order.len();
        let pause = policy.backoff_before(n);
        if !pause.is_zero() {
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            last_failure = GatewayError::UpstreamTimeout;
            break;
        }
        let target = &route.targets[*idx];
        let mut attempt = AttemptRecord::for_target(&target.provider_key, &target.upstream_model);
        let trace = guard.rec().trace.as_ref().map(|c| {
            (
                c.trace_id,
                c.sampled,
                trace_context::new_span_id(&mut rand::thread_rng()),
            )
        });
        if let Some((_, _, span_id)) = trace {
            attempt.trace = Some(AttemptTrace {
                span_id,
                offset_ns: started.elapsed().as_nanos() as u64,
                provider_kind: String::new(),
                server: None,
            });
        }
        let Some(provider) = snap.providers.get(&target.provider_key).cloned() else {
            attempt.error_kind = "provider_missing";
            attempt.error_message =
                format!("provider {:?} is not on this node", target.provider_key);
            guard.rec().attempts.push(attempt);
            last_failure = GatewayError::ProviderMissing(target.provider_key.clone());
            continue;
        };
        attempt.price_multiplier_ppm = provider.price_multiplier_ppm;
        let Some((shape, path)) = operation::shape(op, &provider.kind) else {
            continue;
        };
        let add_usage = stream && op == Operation::ChatCompletions && !client_wants_usage;
        let upstream_body = match body.for_attempt(
            shape,
            &model,
            &target.upstream_model,
            add_usage && shape == Shape::Passthrough,
            has_stream_options,
        ) {
            Ok(b) => b,
            Err(e) => return fail(guard, GatewayError::InvalidRequest(e.0), &request_id, op),
        };
        let uri = operation::upstream_url(&provider.base_url, path, &target.upstream_model);
        // With span export on, the upstream's parent is this attempt's span; without it, the
        // caller's traceparent passes through as it came.
        let traceparent = trace.and_then(|(trace_id, sampled, span_id)| {
            HeaderValue::from_str(&trace_context::traceparent(&trace_id, &span_id, sampled)).ok()
        });
        attempt.provider_name = if provider.kind == "anthropic" {
            "anthropic"
        } else {
            "openai"
        };
        if let Some(t) = &mut attempt.trace {
            t.provider_kind = provider.kind.clone();
            t.server = server_of(&uri);
        }
        let up = match build_upstream_request(
            &uri,
            &provider,
            &guard.rec().request_headers,
            &request_id,
            traceparent,
            upstream_body,
        ) {
            Ok(r) => r,
            Err(e) => return fail(guard, e, &request_id, op),
        };
        let first_byte = policy
            .first_byte_timeout
            .unwrap_or(gw.settings.upstream_first_byte_timeout)
            .min(remaining);
        // Recorded before the call: if the client goes away while we wait, the request log
        // still shows the attempt that reached the upstream.
        let slot = guard.rec().attempts.len();
        if let Some(t) = &mut attempt.trace {
            t.offset_ns = started.elapsed().as_nanos() as u64;
        }
        guard.rec().attempts.push(AttemptRecord {
            error_kind: "cancelled",
            error_message: "the client went away during the attempt".into(),
            ..attempt.clone()
        });
        let t0 = Instant::now();
        let resp = match tokio::time::timeout(first_byte, gw.upstream.request(up)).await {
            Err(_) => {
                attempt.error_kind = "timeout";
                attempt.error_message = format!("no response headers within {first_byte:?}");
                attempt.duration = t0.elapsed();
                guard.rec().attempts[slot] = attempt;
                last_failure = GatewayError::UpstreamTimeout;
                continue;
            }
            Ok(Err(e)) => {
                attempt.error_kind = "connect";
                attempt.error_message = error_chain(&e);
                attempt.duration = t0.elapsed();
                last_failure = GatewayError::UpstreamUnavailable(attempt.error_message.clone());
                guard.rec().attempts[slot] = attempt;
                continue;
            }
            Ok(Ok(r)) => r,
        };
        attempt.ttfb = Some(t0.elapsed());
        let status = resp.status();
        attempt.status_code = status.as_u16();
        if !status.is_success()
            && !is_last
            && route_plan::should_retry(&policy, AttemptResult::Status(status.as_u16()))
        {
            // Read the error for the attempt row, then fall back.
            let bytes = collect_bounded(resp, 64 * 1024, deadline)
                .await
                .unwrap_or_default();
            attempt.error_kind = "upstream_status";
            attempt.error_message = upstream_error_message(&bytes);
            attempt.duration = t0.elapsed();
            guard.rec().attempts[slot] = attempt;
            last_failure = GatewayError::UpstreamUnavailable(format!("upstream answered {status}"));
            continue;
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut out_headers = HeaderMap::new();
        copy_response_headers(resp.headers(), &mut out_headers);
        echo_request_id(&mut out_headers, &request_id);

        if stream && status.is_success() && is_sse {
            attempt.produced_response = true;
            let mode = match shape {
                Shape::Passthrough => StreamMode::Passthrough,
                Shape::ChatToMessages => {
                    StreamMode::FromAnthropic(Box::new(MessagesToChatStream::new(&model)))
                }
                Shape::MessagesToChat => {
                    StreamMode::ToAnthropic(Box::new(ChatToMessagesStream::new(&model)))
                }
            };
            let strip_usage = op == Operation::ChatCompletions && !client_wants_usage;
            return relay_stream(
                guard,
                attempt,
                slot,
                t0,
                resp,
                out_headers,
                mode,
                strip_usage,
                deadline,
            );
        }

        let bytes = match collect_bounded(resp, gw.settings.max_response_bytes, deadline).await {
            Ok(b) => b,
            Err(msg) => {
                attempt.error_kind = "body";
                attempt.error_message = msg.clone();
                attempt.duration = t0.elapsed();
                guard.rec().attempts[slot] = attempt;
                last_failure = GatewayError::UpstreamUnavailable(msg);
                // A successful answer that broke on the way was already paid for upstream:
                // trying again would spend twice.
                if is_last || status.is_success() {
                    break;
                }
                continue;
            }
        };
        attempt.duration = t0.elapsed();
        attempt.produced_response = true;
        if !status.is_success() {
            attempt.error_kind = "upstream_status";
            attempt.error_message = upstream_error_message(&bytes);
        }
        let bytes = translate_body(shape, status.is_success(), &bytes, &model);
        if shape != Shape::Passthrough {
            out_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let error_message = attempt.error_message.clone();
        guard.rec().attempts[slot] = attempt;
        guard.rec().response_body = detached(&bytes);
        guard.rec().ttfb = Some(guard.rec().started.elapsed());
        let outcome = if status.is_success() {
            "success"
        } else {
            "upstream_error"
        };
        guard.finish(status.as_u16(), outcome, error_message);
        let mut r = Response::new(full(bytes));
        *r.status_mut() = status;
        *r.headers_mut() = out_headers;
        return r;
    }
    fail(guard, last_failure, &request_id, op)
}

/// Bodies up to this size are copied for the request record (see [`detached`]).
const DETACH_MAX_BYTES: usize = 64 * 1024;

/// `body` for the request record, in an allocation of its own when small. A body hyper read in
/// one go is a slice of the connection's read buffer; while the record (on its way to the log
/// worker) holds that slice, hyper cannot reuse the buffer and allocates a new one (8 KiB and
/// up) for the next message on the connection, which the log worker then frees from another
/// thread. Copying a few hundred bytes is cheaper than that churn on every request.
fn detached(body: &Bytes) -> Bytes {
    if body.len() <= DETACH_MAX_BYTES {
        Bytes::copy_from_slice(body)
    } else {
        body.clone()
    }
}

/// A translated body for the client: successes through the translator, errors into the client
/// API's error shape.
fn translate_body(shape: Shape, success: bool, bytes: &Bytes, model: &str) -> Bytes {
    if shape == Shape::Passthrough {
        return bytes.clone();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return bytes.clone();
    };
    let out = match (shape, success) {
        (Shape::ChatToMessages, true) => at::messages_response_to_chat(&v, model),
        (Shape::MessagesToChat, true) => at::chat_response_to_messages(&v, model),
        (Shape::ChatToMessages, false) => serde_json::json!({"error": {
            "message": v.pointer("/error/message").cloned().unwrap_or(v.clone()),
            "type": v.pointer("/error/type").cloned().unwrap_or(serde_json::json!("api_error")),
            "param": null, "code": null,
        }}),
        (Shape::MessagesToChat, false) => serde_json::json!({"type": "error", "error": {
            "type": v.pointer("/error/type").cloned().unwrap_or(serde_json::json!("api_error")),
            "message": v.pointer("/error/message").cloned().unwrap_or(v.clone()),
        }}),
        (Shape::Passthrough, _) => return bytes.clone(),
    };
    Bytes::from(serde_json::to_vec(&out).unwrap_or_default())
}

fn build_upstream_request(
    uri: &str,
    provider: &Provider,
    client_headers: &HeaderMap,
    request_id: &str,
    traceparent: Option<HeaderValue>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let mut up = Request::builder().method(Method::POST).uri(uri);
    let h = up.headers_mut().expect("builder has headers");
    copy_request_headers(client_headers, &provider.kind, h);
    if let Some(tp) = traceparent {
        h.insert("traceparent", tp);
    }
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if provider.kind == "anthropic" && !h.contains_key("anthropic-version") {
        h.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
    }
    for (k, v) in &provider.extra_headers {
        h.insert(k.clone(), v.clone());
    }
    // Last, so no extra header can replace the credential.
    if let Some((name, value)) = &provider.auth {
        h.insert(name.clone(), value.clone());
    }
    echo_request_id(h, request_id);
    up.body(Full::new(body))
        .map_err(|e| GatewayError::Internal(format!("upstream URL {uri:?}: {e}")))
}

/// Host and port of an upstream URL, for `server.address` / `server.port`.
fn server_of(uri: &str) -> Option<(String, u16)> {
    let u: http::Uri = uri.parse().ok()?;
    let host = u
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = u.port_u16().unwrap_or(if u.scheme_str() == Some("https") {
        443
    } else {
        80
    });
    Some((host, port))
}

/// The Anthropic API version sent when the client did not name one.
const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Collects a response body up to `limit` bytes before `deadline`.
async fn collect_bounded(
    resp: http::Response<Incoming>,
    limit: usize,
    deadline: Instant,
) -> Result<Bytes, String> {
    let limited = Limited::new(resp.into_body(), limit);
    match tokio::time::timeout_at(deadline.into(), limited.collect()).await {
        Err(_) => Err("the response body did not finish in time".into()),
        Ok(Err(e)) => Err(format!("reading the response body failed: {e}")),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// How a stream's events reach the client.
enum StreamMode {
    /// As they come.
    Passthrough,
    /// Anthropic events translated to OpenAI chat chunks.
    FromAnthropic(Box<MessagesToChatStream>),
    /// OpenAI chat chunks translated to Anthropic events.
    ToAnthropic(Box<ChatToMessagesStream>),
}

impl StreamMode {
    /// The client events for one upstream event.
    fn translate(&mut self, event: Bytes, out: &mut Vec<Bytes>) {
        match self {
            StreamMode::Passthrough => out.push(event),
            StreamMode::FromAnthropic(t) => {
                if let Some(d) = event_data(&event) {
                    t.event(&d, out);
                }
            }
            StreamMode::ToAnthropic(t) => {
                if let Some(d) = event_data(&event) {
                    t.event(&d, out);
                }
            }
        }
    }

    /// Events owed at the end of a complete upstream stream.
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        match self {
            StreamMode::Passthrough => {}
            StreamMode::FromAnthropic(t) => t.finish(out),
            StreamMode::ToAnthropic(t) => t.finish(out),
        }
    }

    fn anthropic_client(&self) -> bool {
        matches!(self, StreamMode::ToAnthropic(_))
    }
}

/// Relays an upstream SSE stream event by event, as each arrives.
#[allow(clippy::too_many_arguments)]
fn relay_stream(
    mut guard: RecordGuard,
    mut attempt: AttemptRecord,
    slot: usize,
    attempt_started: Instant,
    resp: http::Response<Incoming>,
    mut headers: HeaderMap,
    mut mode: StreamMode,
    strip_usage: bool,
    deadline: Instant,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let status = resp.status();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    tokio::spawn(async move {
        let mut upstream = resp.into_body();
        let mut framer = SseFramer::new();
        let mut kept_bytes = 0usize;
        let mut failure: Option<String> = None;
        let mut cancelled = false;
        let mut out: Vec<Bytes> = Vec::new();
        'relay: loop {
            tokio::select! {
                biased;
                _ = tx.closed() => {
                    cancelled = true;
                    break 'relay;
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    failure = Some("the route's total timeout passed mid-stream".into());
                    break 'relay;
                }
                frame = upstream.frame() => match frame {
                    None => break 'relay,
                    Some(Err(e)) => {
                        failure = Some(error_chain(&e));
                        break 'relay;
                    }
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else { continue };
                        framer.push(&data);
                        while let Some(event) = framer.next_event() {
                            mode.translate(event, &mut out);
                        }
                        if !forward(&mut guard, &tx, &mut out, &mut kept_bytes, strip_usage).await {
                            cancelled = true;
                            break 'relay;
                        }
                    }
                }
            }
        }
        // Dropping the upstream body closes its connection: a cancelled client cancels the
        // upstream request.
        drop(upstream);
        if !cancelled && failure.is_none() {
            if let Some(rest) = framer.finish() {
                mode.translate(rest, &mut out);
            }
            mode.finish(&mut out);
            forward(&mut guard, &tx, &mut out, &mut kept_bytes, strip_usage).await;
        }
        attempt.duration = attempt_started.elapsed();
        if cancelled {
            attempt.error_kind = "cancelled";
            attempt.error_message = "client disconnected mid-stream".into();
            guard.rec().attempts[slot] = attempt;
            guard.finish(499, "cancelled", "client disconnected mid-stream".into());
        } else if let Some(msg) = failure {
            attempt.error_kind = "stream_broken";
            attempt.error_message = msg.clone();
            guard.rec().attempts[slot] = attempt;
            let text = format!("The upstream stream broke: {msg}");
            let event = if mode.anthropic_client() {
                let v = serde_json::json!({"type": "error", "error": {"type": "api_error", "message": text}});
                Bytes::from(format!("event: error\ndata: {v}\n\n"))
            } else {
                let v = serde_json::json!({"error": {"message": text, "type": "api_error", "param": null, "code": "stream_error"}});
                Bytes::from(format!("data: {v}\n\n"))
            };
            let _ = tx.send(Ok(Frame::data(event))).await;
            guard.finish(
                status.as_u16(),
                "stream_error",
                format!("upstream stream broke: {msg}"),
            );
        } else {
            guard.rec().attempts[slot] = attempt;
            guard.finish(status.as_u16(), "success", String::new());
        }
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

/// Records and sends the pending client events; false when the client is gone.
async fn forward(
    guard: &mut RecordGuard,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    out: &mut Vec<Bytes>,
    kept_bytes: &mut usize,
    strip_usage: bool,
) -> bool {
    for event in out.drain(..) {
        let rec = guard.rec();
        if !observe_event(rec, &event, kept_bytes, strip_usage) {
            continue;
        }
        if rec.ttfb.is_none() {
            rec.ttfb = Some(rec.started.elapsed());
        }
        if tx.send(Ok(Frame::data(event))).await.is_err() {
            return false;
        }
    }
    true
}

/// Records an event for the log and says whether the client should get it.
fn observe_event(
    rec: &mut RequestRecord,
    event: &Bytes,
    kept_bytes: &mut usize,
    strip_usage: bool,
) -> bool {
    rec.stream_events_seen += 1;
    let (has_usage, usage_only) = usage_probe(event);
    if has_usage {
        rec.last_usage_event = Some(event.clone());
    }
    if *kept_bytes + event.len() <= STREAM_RECORD_BYTES {
        *kept_bytes += event.len();
        rec.stream_events.push(event.clone());
    }
    !(strip_usage && usage_only)
}

/// Whether an event carries a non-null usage, and whether it is the usage-only chunk
/// (`choices: []`) that `include_usage` adds.
fn usage_probe(event: &[u8]) -> (bool, bool) {
    if memchr::memmem::find(event, b"\"usage\"").is_none() {
        return (false, false);
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        choices: Option<Vec<IgnoredAny>>,
        #[serde(default)]
        usage: Option<IgnoredAny>,
    }
    let Some(data) = event_data(event) else {
        return (false, false);
    };
    match serde_json::from_slice::<Probe>(&data) {
        Ok(p) => {
            let has = p.usage.is_some();
            (has, has && p.choices.as_ref().is_some_and(Vec::is_empty))
        }
        Err(_) => (false, false),
    }
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::BodyTooLarge(limit))
        }
        Err(e) => Err(GatewayError::InvalidJson(format!(
            "reading the body failed: {e}"
        ))),
    }
}

/// Request headers passed to every upstream: an allowlist, so gateway credentials, caller tags
/// and hop-by-hop headers never leave.
const FORWARDED_REQUEST_HEADERS: [&str; 4] = ["accept", "user-agent", "traceparent", "tracestate"];

/// Provider-specific request headers, passed only to providers of that kind.
const FORWARDED_OPENAI_HEADERS: [&str; 1] = ["openai-beta"];
const FORWARDED_ANTHROPIC_HEADERS: [&str; 2] = ["anthropic-version", "anthropic-beta"];

fn copy_request_headers(from: &HeaderMap, kind: &str, to: &mut HeaderMap) {
    let specific: &[&str] = match kind {
        "anthropic" => &FORWARDED_ANTHROPIC_HEADERS,
        _ => &FORWARDED_OPENAI_HEADERS,
    };
    for name in FORWARDED_REQUEST_HEADERS.iter().chain(specific) {
        if let Some(v) = from.get(*name) {
            to.insert(HeaderName::from_static(name), v.clone());
        }
    }
}

/// Response headers passed back to the client.
fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        let keep = matches!(n, "content-type" | "cache-control" | "retry-after")
            || n.starts_with("x-ratelimit-")
            || n.starts_with("openai-")
            || n.starts_with("anthropic-");
        if keep {
            to.append(name.clone(), value.clone());
        }
    }
}

fn upstream_error_message(body: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    msg.chars().take(1024).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_probe_finds_the_usage_only_chunk() {
        let cases: &[(&[u8], (bool, bool))] = &[
            (
                b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n",
                (false, false),
            ),
            (
                b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
                (true, true),
            ),
            (
                b"data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n",
                (true, false),
            ),
            (b"data: [DONE]\n\n", (false, false)),
            (b"data: {\"usage\": tru\n\n", (false, false)),
        ];
        for (event, want) in cases {
            assert_eq!(
                usage_probe(event),
                *want,
                "{}",
                String::from_utf8_lossy(event)
            );
        }
    }

    #[test]
    fn request_ids() {
        use crate::request_record::time_ordered_id;
        let mut h = HeaderMap::new();
        let log_id = time_ordered_id();
        let generated = request_id(&h, log_id).unwrap();
        assert_eq!(generated.len(), 32);
        assert_eq!(
            uuid::Uuid::parse_str(&generated).unwrap(),
            log_id,
            "minted id is the log id"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = request_id(&h, time_ordered_id()).unwrap();
        assert!(
            generated < later,
            "generated ids sort by time: {generated} {later}"
        );
        h.insert("x-request-id", HeaderValue::from_static("caller-123"));
        assert_eq!(request_id(&h, log_id).unwrap(), "caller-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_eq!(request_id(&h, log_id).unwrap_err().code(), "invalid_header");
    }

    #[test]
    fn credentials_and_tags_are_not_forwarded() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer weir_sk_x"),
            ("x-api-key", "k"),
            ("x-weir-service", "billing"),
            ("user-agent", "openai-python/1.0"),
            ("cookie", "c"),
        ] {
            from.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        from.insert("anthropic-beta", HeaderValue::from_static("x"));
        from.insert("openai-beta", HeaderValue::from_static("assistants=v2"));
        let mut to = HeaderMap::new();
        copy_request_headers(&from, "openai", &mut to);
        assert_eq!(to.len(), 2);
        assert!(to.contains_key("user-agent") && to.contains_key("openai-beta"));
        let mut to = HeaderMap::new();
        copy_request_headers(&from, "anthropic", &mut to);
        assert_eq!(to.len(), 2);
        assert!(to.contains_key("user-agent") && to.contains_key("anthropic-beta"));
    }
}
