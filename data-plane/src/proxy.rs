//! The client-facing HTTP server and its request phases: identify (request id), authenticate,
//! read and parse only what routing needs, route, call the upstream, relay the answer, and hand
//! the record to the log queue.

use std::borrow::Cow;
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

use crate::body::{full, Body};
use crate::config_stream::ConfigState;
use crate::gateway_error::GatewayError;
use crate::key_auth;
use crate::log_shipper::LogQueue;
use crate::request_record::{AttemptRecord, RecordGuard, RequestRecord};
use crate::settings::Settings;
use crate::sse_transcript::{event_data, SseFramer};
use crate::upstream::UpstreamClient;

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
    node_id: Arc<str>,
    group: Arc<str>,
}

impl Gateway {
    /// Shared state for a server.
    pub fn new(
        config: Arc<ConfigState>,
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
        }
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

/// Binds the client-facing listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(&gw),
        (&Method::POST, "/v1/chat/completions") => chat_completions(&gw, req, started).await,
        (&Method::GET, "/v1/models") => models(&gw, &req),
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
        "config_versions": {
            "providers": snap.version(weir_proto::config::ResourceType::Providers),
            "routes": snap.version(weir_proto::config::ResourceType::Routes),
            "api_keys": snap.version(weir_proto::config::ResourceType::ApiKeys),
            "payload_policy": snap.version(weir_proto::config::ResourceType::PayloadPolicy),
        },
        "config_nacks": load(&gw.config.nacks),
        "request_logs": {
            "enqueued": load(&c.enqueued),
            "acked": load(&c.acked),
            "buffered": load(&c.buffered),
            "dropped_queue_full": load(&c.dropped_queue_full),
            "dropped_buffer_full": load(&c.dropped_buffer_full),
            "rejected": load(&c.rejected),
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

/// A fresh request id: 32 hex characters, so it can double as a trace id.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The caller's `x-request-id` when acceptable, a new one when absent, an error when malformed.
fn request_id(headers: &HeaderMap) -> Result<String, GatewayError> {
    match headers.get("x-request-id") {
        None => Ok(new_request_id()),
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn models(gw: &Gateway, req: &Request<Incoming>) -> Response<Body> {
    let snap = gw.config.current.load_full();
    let request_id = match request_id(req.headers()) {
        Ok(id) => id,
        Err(e) => return e.response(&new_request_id()),
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

/// The only fields of a chat request the request path reads.
#[derive(Deserialize)]
struct ChatFields<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A finished request's failure, answered and logged.
fn fail(guard: RecordGuard, e: GatewayError, request_id: &str) -> Response<Body> {
    guard.finish(e.status().as_u16(), e.outcome(), e.to_string());
    e.response(request_id)
}

async fn chat_completions(
    gw: &Gateway,
    req: Request<Incoming>,
    started: Instant,
) -> Response<Body> {
    let snap = gw.config.current.load_full();
    let request_id = match request_id(req.headers()) {
        Ok(id) => id,
        Err(e) => return e.response(&new_request_id()),
    };
    if !snap.is_complete() {
        return GatewayError::NotReady.response(&request_id);
    }
    // Unauthenticated requests never reach an upstream, and are not logged as anyone's.
    let key = match key_auth::authenticate(&snap, req.headers(), now_ms()) {
        Ok(k) => k,
        Err(e) => return e.response(&request_id),
    };
    let (parts, body) = req.into_parts();
    let mut guard = RecordGuard::new(
        RequestRecord::new(
            "chat_completions",
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

    let body = match read_body(body, gw.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return fail(guard, e, &request_id),
    };
    guard.rec().request_body = body.clone();
    let fields: ChatFields<'_> = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return fail(guard, GatewayError::InvalidJson(e.to_string()), &request_id),
    };
    let stream = match &fields.stream {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => {
            let e = GatewayError::InvalidParameter(
                "stream",
                format!("expected a boolean, got {other}"),
            );
            return fail(guard, e, &request_id);
        }
    };
    guard.rec().stream = stream;
    let Some(model) = fields.model.as_deref().filter(|m| !m.is_empty()) else {
        return fail(guard, GatewayError::MissingParameter("model"), &request_id);
    };
    guard.rec().model_key = model.to_string();
    if let Some(allowed) = &key.allowed_models {
        if !allowed.contains(model) {
            return fail(
                guard,
                GatewayError::ModelNotAllowed(model.to_string()),
                &request_id,
            );
        }
    }
    let Some(route) = snap.routes.get(model).cloned() else {
        return fail(
            guard,
            GatewayError::ModelNotFound(model.to_string()),
            &request_id,
        );
    };
    let roll = rand::Rng::gen_range(&mut rand::thread_rng(), 0..route.total_weight());
    let target = route.pick(roll).clone();
    let Some(provider) = snap.providers.get(&target.provider_key).cloned() else {
        return fail(
            guard,
            GatewayError::ProviderMissing(target.provider_key.clone()),
            &request_id,
        );
    };

    // Streams must report usage for the log; ask for it, and hide it again from a client that
    // did not ask.
    let client_wants_usage = fields
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let upstream_body = if stream && !client_wants_usage {
        match with_include_usage(&body, fields.stream_options.is_some()) {
            Some(b) => b,
            None => {
                return fail(
                    guard,
                    GatewayError::Internal("rewriting stream_options".into()),
                    &request_id,
                )
            }
        }
    } else {
        body.clone()
    };
    let upstream_body = if target.upstream_model != model {
        match with_model(&upstream_body, &target.upstream_model) {
            Some(b) => b,
            None => {
                return fail(
                    guard,
                    GatewayError::Internal("rewriting model".into()),
                    &request_id,
                )
            }
        }
    } else {
        upstream_body
    };

    let uri = format!("{}/chat/completions", provider.base_url);
    let mut up = Request::builder().method(Method::POST).uri(&uri);
    {
        let h = up.headers_mut().expect("builder has headers");
        copy_request_headers(&guard.rec().request_headers, h);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some((name, value)) = &provider.auth {
            h.insert(name.clone(), value.clone());
        }
        for (k, v) in &provider.extra_headers {
            h.insert(k.clone(), v.clone());
        }
        echo_request_id(h, &request_id);
    }
    let up = match up.body(Full::new(upstream_body)) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                guard,
                GatewayError::Internal(format!("upstream URL {uri:?}: {e}")),
                &request_id,
            )
        }
    };

    let attempt_started = Instant::now();
    let mut attempt = AttemptRecord {
        provider_key: target.provider_key.clone(),
        upstream_model: target.upstream_model.clone(),
        status_code: 0,
        error_kind: "",
        error_message: String::new(),
        duration: Duration::ZERO,
        ttfb: None,
        produced_response: false,
    };
    let sent = tokio::time::timeout(
        gw.settings.upstream_first_byte_timeout,
        gw.upstream.request(up),
    )
    .await;
    let resp = match sent {
        Err(_) => {
            attempt.error_kind = "timeout";
            attempt.error_message = "no response headers in time".into();
            attempt.duration = attempt_started.elapsed();
            guard.rec().attempts.push(attempt);
            return fail(guard, GatewayError::UpstreamTimeout, &request_id);
        }
        Ok(Err(e)) => {
            attempt.error_kind = "connect";
            attempt.error_message = error_chain(&e);
            attempt.duration = attempt_started.elapsed();
            let msg = attempt.error_message.clone();
            guard.rec().attempts.push(attempt);
            return fail(guard, GatewayError::UpstreamUnavailable(msg), &request_id);
        }
        Ok(Ok(r)) => r,
    };
    attempt.ttfb = Some(attempt_started.elapsed());
    attempt.status_code = resp.status().as_u16();
    attempt.produced_response = true;
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut out_headers = HeaderMap::new();
    copy_response_headers(resp.headers(), &mut out_headers);
    echo_request_id(&mut out_headers, &request_id);

    if stream && status.is_success() && is_sse {
        return relay_stream(
            guard,
            attempt,
            attempt_started,
            resp,
            out_headers,
            !client_wants_usage,
        );
    }

    // A whole body: collected (bounded), then sent in one piece.
    let limited = Limited::new(resp.into_body(), gw.settings.max_response_bytes);
    let bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            attempt.error_kind = "body";
            attempt.error_message = e.to_string();
            attempt.duration = attempt_started.elapsed();
            attempt.produced_response = false;
            let msg = attempt.error_message.clone();
            guard.rec().attempts.push(attempt);
            return fail(guard, GatewayError::UpstreamUnavailable(msg), &request_id);
        }
    };
    attempt.duration = attempt_started.elapsed();
    if !status.is_success() {
        attempt.error_kind = "upstream_status";
        attempt.error_message = upstream_error_message(&bytes);
    }
    let error_message = attempt.error_message.clone();
    guard.rec().attempts.push(attempt);
    guard.rec().response_body = bytes.clone();
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
    r
}

/// Relays an upstream SSE stream event by event, as each arrives.
fn relay_stream(
    mut guard: RecordGuard,
    mut attempt: AttemptRecord,
    attempt_started: Instant,
    resp: http::Response<Incoming>,
    headers: HeaderMap,
    strip_usage: bool,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    let status = resp.status();
    tokio::spawn(async move {
        let mut upstream = resp.into_body();
        let mut framer = SseFramer::new();
        let mut kept_bytes = 0usize;
        let mut failure: Option<String> = None;
        let mut cancelled = false;
        'relay: loop {
            tokio::select! {
                biased;
                _ = tx.closed() => {
                    cancelled = true;
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
                            let rec = guard.rec();
                            let forward = observe_event(rec, &event, &mut kept_bytes, strip_usage);
                            if forward {
                                if rec.ttfb.is_none() {
                                    rec.ttfb = Some(rec.started.elapsed());
                                }
                                if tx.send(Ok(Frame::data(event))).await.is_err() {
                                    cancelled = true;
                                    break 'relay;
                                }
                            }
                        }
                    }
                }
            }
        }
        // Dropping the upstream body here closes its connection: a cancelled client cancels the
        // upstream request.
        drop(upstream);
        if !cancelled {
            if let Some(rest) = framer.finish() {
                let rec = guard.rec();
                if observe_event(rec, &rest, &mut kept_bytes, strip_usage) {
                    let _ = tx.send(Ok(Frame::data(rest))).await;
                }
            }
        }
        attempt.duration = attempt_started.elapsed();
        if cancelled {
            attempt.error_kind = "cancelled";
            attempt.error_message = "client disconnected mid-stream".into();
            guard.rec().attempts.push(attempt);
            guard.finish(499, "cancelled", "client disconnected mid-stream".into());
        } else if let Some(msg) = failure {
            attempt.error_kind = "stream_broken";
            attempt.error_message = msg.clone();
            guard.rec().attempts.push(attempt);
            let event = serde_json::json!({"error": {
                "message": format!("The upstream stream broke: {msg}"),
                "type": "api_error",
                "param": null,
                "code": "stream_error",
            }});
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(format!("data: {event}\n\n")))))
                .await;
            guard.finish(
                status.as_u16(),
                "stream_error",
                format!("upstream stream broke: {msg}"),
            );
        } else {
            guard.rec().attempts.push(attempt);
            guard.finish(status.as_u16(), "success", String::new());
        }
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
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

/// Sets `stream_options.include_usage = true`. `has_options` says whether the object already
/// has `stream_options` (then it is rewritten through a full parse; otherwise one field is
/// spliced in after the opening brace, leaving the rest of the bytes untouched).
fn with_include_usage(body: &Bytes, has_options: bool) -> Option<Bytes> {
    if !has_options {
        let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
        if body[start] != b'{' {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=start]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
        out.extend_from_slice(&body[start + 1..]);
        return Some(Bytes::from(out));
    }
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !opts.is_object() {
        *opts = serde_json::json!({});
    }
    opts.as_object_mut()?
        .insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// Replaces `model` with the target's upstream model.
fn with_model(body: &Bytes, model: &str) -> Option<Bytes> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.as_object_mut()?
        .insert("model".into(), serde_json::Value::String(model.to_string()));
    serde_json::to_vec(&v).ok().map(Bytes::from)
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

/// Request headers passed to the upstream: an allowlist, so gateway credentials, caller tags and
/// hop-by-hop headers never leave.
const FORWARDED_REQUEST_HEADERS: [&str; 6] = [
    "accept",
    "user-agent",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "traceparent",
];

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(v) = from.get(name) {
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
    fn include_usage_is_spliced_or_merged() {
        let b = Bytes::from_static(br#"  {"model":"m","stream":true}"#);
        let out = with_include_usage(&b, false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "m");
        let b =
            Bytes::from_static(br#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#);
        let v: serde_json::Value =
            serde_json::from_slice(&with_include_usage(&b, true).unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        assert!(with_include_usage(&Bytes::from_static(b"[1]"), false).is_none());
    }

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
        let mut h = HeaderMap::new();
        let generated = request_id(&h).unwrap();
        assert_eq!(generated.len(), 32);
        h.insert("x-request-id", HeaderValue::from_static("caller-123"));
        assert_eq!(request_id(&h).unwrap(), "caller-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_eq!(request_id(&h).unwrap_err().code(), "invalid_header");
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
        let mut to = HeaderMap::new();
        copy_request_headers(&from, &mut to);
        assert_eq!(to.len(), 1);
        assert!(to.contains_key("user-agent"));
    }
}
