//! A mock OpenAI-compatible upstream: chat completions as JSON or as SSE (with the usage chunk
//! exactly when `stream_options.include_usage` is set, as OpenAI does), plus embeddings and
//! models. Tests, the quickstart and the benchmarks use it so nothing needs a provider key.
//!
//! The upstream model name selects a behaviour:
//! - anything else: a normal answer;
//! - `mock-slow`: stream chunks 300 ms apart;
//! - `mock-endless`: stream a chunk every 50 ms until the client goes away;
//! - `mock-break`: stream two chunks, then break the connection;
//! - `mock-503`: answer 503 with an OpenAI error body;
//! - `mock-tools`: answer with two tool calls;
//! - `mock-hang`: answer (non-streamed) only after 5 s.
//!
//! `/v1/responses` speaks the Responses API and `/v1/messages` the Anthropic Messages API
//! (JSON and SSE, usage included), with the same behaviours.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

type Body = BoxBody<Bytes, std::io::Error>;

/// A request the mock received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Path.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
    /// Parsed JSON body.
    pub body: Value,
}

/// What the mock observed, shared with tests.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every request, in arrival order.
    pub requests: Mutex<Vec<Received>>,
    /// Streams whose client went away before the end.
    pub cancelled_streams: AtomicU64,
    /// When the last stream cancellation was noticed.
    pub last_cancel_at: Mutex<Option<Instant>>,
    /// When the last stream finished sending (normally).
    pub last_stream_end_at: Mutex<Option<Instant>>,
    /// Pages the cost-report endpoints serve (OpenAI's `/v1/organization/costs`, Anthropic's
    /// `/v1/organizations/cost_report`), by path; a `page=<n>` query selects page n (from 0).
    pub cost_pages: Mutex<std::collections::HashMap<String, Vec<Value>>>,
}

impl Observed {
    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    /// The last request received.
    pub fn last(&self) -> Option<Received> {
        self.requests.lock().expect("lock").last().cloned()
    }
}

/// A running mock upstream.
pub struct MockUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub observed: Arc<Observed>,
    task: tokio::task::JoinHandle<()>,
}

impl MockUpstream {
    /// Starts on `addr` (port 0 for any).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let observed = Arc::new(Observed::default());
        let obs = observed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let obs = obs.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(obs.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(MockUpstream {
            addr,
            observed,
            task,
        })
    }

    /// Starts on `addr` serving HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with the PEM `cert` chain
    /// and `key`.
    pub async fn start_tls(
        addr: SocketAddr,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> std::io::Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|e| invalid(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let observed = Arc::new(Observed::default());
        let obs = observed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (obs, acceptor) = (obs.clone(), acceptor.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req| handle(obs.clone(), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Ok(MockUpstream {
            addr,
            observed,
            task,
        })
    }

    /// The base URL a provider should use, e.g. `http://127.0.0.1:1234/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json_response(status: StatusCode, v: Value) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(v.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    r.headers_mut().insert(
        "x-ratelimit-remaining-requests",
        "999".parse().expect("static"),
    );
    r
}

async fn handle(obs: Arc<Observed>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let path = parts.uri.path().to_string();
    obs.requests.lock().expect("lock").push(Received {
        path: path.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let resp = match (&parts.method, path.as_str()) {
        (&Method::POST, "/v1/chat/completions") => chat(obs, &body),
        (&Method::POST, "/v1/embeddings") => embeddings(&body),
        (&Method::POST, "/v1/responses") => responses(obs, &body),
        (&Method::POST, "/v1/messages") => messages(obs, &body),
        (&Method::GET, "/v1/organization/costs" | "/v1/organizations/cost_report") => {
            let page: usize = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let pages = obs.cost_pages.lock().expect("lock");
            match pages.get(&path).and_then(|p| p.get(page)) {
                Some(v) => json_response(StatusCode::OK, v.clone()),
                None => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": {"message": format!("mock: no page {page} of {path}")}}),
                ),
            }
        }
        (&Method::GET, "/v1/models") => json_response(
            StatusCode::OK,
            json!({"object": "list", "data": [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "mock"}]}),
        ),
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": {"message": format!("mock: no route for {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ),
    };
    Ok(resp)
}

/// A usage object the test asks for (`metadata.mock_usage`, JSON text), returned verbatim in
/// the provider's own shape so every usage field can be exercised through the gateway.
fn mock_usage(body: &Value) -> Option<Value> {
    body.pointer("/metadata/mock_usage")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The service tier the test asks the mock to report (`metadata.mock_service_tier`).
fn mock_tier(body: &Value) -> Option<String> {
    body.pointer("/metadata/mock_service_tier")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn last_user_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Tokens the mock charges for a text: one per whitespace-separated word, at least one.
fn tokens(s: &str) -> u64 {
    s.split_whitespace().count().max(1) as u64
}

const ANSWER: [&str; 5] = ["Hello", " from", " the", " mock", " upstream"];

fn chat(obs: Arc<Observed>, body: &Value) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or("mock-model").to_string();
    if model == "mock-503" {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": {"message": "mock: overloaded", "type": "server_error", "param": null, "code": null}}),
        );
    }
    if model == "mock-hang" {
        let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => {
                    let _ = tx.send(Ok(Frame::data(Bytes::from_static(b"{}")))).await;
                }
                _ = tx.closed() => {
                    obs.cancelled_streams.fetch_add(1, Ordering::SeqCst);
                    *obs.last_cancel_at.lock().expect("lock") = Some(Instant::now());
                }
            }
        });
        let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
        r.headers_mut()
            .insert("content-type", "application/json".parse().expect("static"));
        return r;
    }
    let prompt_tokens = tokens(&last_user_text(body));
    let completion_tokens = ANSWER.len() as u64;
    let usage = mock_usage(body).unwrap_or_else(|| {
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        })
    });
    let tier = mock_tier(body);
    let id = format!("chatcmpl-mock-{}", uuid::Uuid::new_v4().simple());
    if body["stream"] != Value::Bool(true) {
        let message = if model == "mock-tools" {
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]})
        } else {
            json!({"role": "assistant", "content": ANSWER.concat()})
        };
        let finish = if model == "mock-tools" {
            "tool_calls"
        } else {
            "stop"
        };
        let mut v = json!({
            "id": id, "object": "chat.completion", "created": 1_700_000_000, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
            "usage": usage,
        });
        if let Some(t) = &tier {
            v["service_tier"] = json!(t);
        }
        return json_response(StatusCode::OK, v);
    }
    let include_usage = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let gap = match model.as_str() {
            "mock-slow" => Duration::from_millis(300),
            "mock-endless" => Duration::from_millis(50),
            _ => Duration::ZERO,
        };
        let chunk = |delta: Value, finish: Value| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            if let Some(t) = &tier {
                c["service_tier"] = json!(t);
            }
            Bytes::from(format!("data: {c}\n\n"))
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        events.extend(
            ANSWER
                .iter()
                .map(|w| chunk(json!({"content": w}), Value::Null)),
        );
        events.push(chunk(json!({}), json!("stop")));
        let mut i = 0usize;
        loop {
            let event = if model == "mock-endless" {
                chunk(json!({"content": " more"}), Value::Null)
            } else if i < events.len() {
                events[i].clone()
            } else {
                break;
            };
            if model == "mock-break" && i == 2 {
                // Let what was sent reach the wire before the connection breaks.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock: broken",
                    )))
                    .await;
                return;
            }
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                obs.cancelled_streams.fetch_add(1, Ordering::SeqCst);
                *obs.last_cancel_at.lock().expect("lock") = Some(Instant::now());
                return;
            }
            i += 1;
            if !gap.is_zero() {
                // Notice a client that left while we wait.
                tokio::select! {
                    _ = tokio::time::sleep(gap) => {}
                    _ = tx.closed() => {
                        obs.cancelled_streams.fetch_add(1, Ordering::SeqCst);
                        *obs.last_cancel_at.lock().expect("lock") = Some(Instant::now());
                        return;
                    }
                }
            }
        }
        if include_usage {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                "choices": [], "usage": usage,
            });
            if let Some(t) = &tier {
                c["service_tier"] = json!(t);
            }
            let _ = tx
                .send(Ok(Frame::data(Bytes::from(format!("data: {c}\n\n")))))
                .await;
        }
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .await;
        *obs.last_stream_end_at.lock().expect("lock") = Some(Instant::now());
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("static"));
    r.headers_mut()
        .insert("cache-control", "no-cache".parse().expect("static"));
    r
}

fn embeddings(body: &Value) -> Response<Body> {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => vec![String::new()],
    };
    let prompt_tokens: u64 = inputs.iter().map(|s| tokens(s)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"object": "list", "data": data, "model": body["model"],
               "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}),
    )
}

/// Sends `events` as an SSE body, `gap` apart, noting a client that leaves.
fn sse_body(
    obs: Arc<Observed>,
    events: Vec<Bytes>,
    gap: Duration,
    break_after: Option<usize>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if break_after == Some(i) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "mock: broken",
                    )))
                    .await;
                return;
            }
            if tx.send(Ok(Frame::data(event))).await.is_err() {
                obs.cancelled_streams.fetch_add(1, Ordering::SeqCst);
                *obs.last_cancel_at.lock().expect("lock") = Some(Instant::now());
                return;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
        *obs.last_stream_end_at.lock().expect("lock") = Some(Instant::now());
    });
    let mut r = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().expect("static"));
    r
}

fn named(name: &str, v: Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {v}\n\n"))
}

fn gap_for(model: &str) -> Duration {
    if model == "mock-slow" {
        Duration::from_millis(300)
    } else {
        Duration::ZERO
    }
}

fn responses(obs: Arc<Observed>, body: &Value) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or("mock-model").to_string();
    if model == "mock-503" {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": {"message": "mock: overloaded", "type": "server_error", "param": null, "code": null}}),
        );
    }
    let input = body["input"].as_str().map(tokens).unwrap_or(1);
    let id = format!("resp_mock_{}", uuid::Uuid::new_v4().simple());
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": ANSWER.len(), "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input + ANSWER.len() as u64});
    let text = ANSWER.concat();
    let item = json!({"id": "msg_mock", "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]});
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": id, "object": "response", "created_at": 1_700_000_000, "status": status, "model": model,
            "output": output, "usage": usage, "error": null, "incomplete_details": null,
            "instructions": null, "metadata": {}, "parallel_tool_calls": true, "temperature": 1.0,
            "tool_choice": "auto", "tools": [], "top_p": 1.0,
        })
    };
    if body["stream"] != Value::Bool(true) {
        return json_response(StatusCode::OK, response("completed", json!([item]), usage));
    }
    let mut seq = 0u64;
    let mut ev = |name: &str, mut v: Value| {
        v["type"] = json!(name);
        v["sequence_number"] = json!(seq);
        seq += 1;
        named(name, v)
    };
    let mut events = vec![
        ev(
            "response.created",
            json!({"response": response("in_progress", json!([]), Value::Null)}),
        ),
        ev(
            "response.output_item.added",
            json!({"output_index": 0, "item": {"id": "msg_mock", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ),
    ];
    for w in ANSWER {
        events.push(ev(
            "response.output_text.delta",
            json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": w}),
        ));
    }
    events.push(ev(
        "response.output_text.done",
        json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "text": text}),
    ));
    events.push(ev(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
    ));
    events.push(ev(
        "response.completed",
        json!({"response": response("completed", json!([item]), usage)}),
    ));
    let break_after = (model == "mock-break").then_some(2);
    sse_body(obs, events, gap_for(&model), break_after)
}

fn messages(obs: Arc<Observed>, body: &Value) -> Response<Body> {
    let model = body["model"].as_str().unwrap_or("mock-model").to_string();
    if model == "mock-503" {
        let mut r = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "mock: overloaded"}}),
        );
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    let prompt = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| match &m["content"] {
            Value::String(s) => tokens(s),
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str())
                .map(tokens)
                .sum::<u64>()
                .max(1),
            _ => 1,
        })
        .unwrap_or(1);
    let id = format!("msg_mock_{}", uuid::Uuid::new_v4().simple());
    let tools = model == "mock-tools";
    let content = if tools {
        json!([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}])
    } else {
        json!([{"type": "text", "text": ANSWER.concat()}])
    };
    let stop = if tools { "tool_use" } else { "end_turn" };
    let usage = mock_usage(body).unwrap_or_else(|| {
        json!({"input_tokens": prompt, "output_tokens": ANSWER.len() as u64,
               "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
    });
    let out_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
    if body["stream"] != Value::Bool(true) {
        return json_response(
            StatusCode::OK,
            json!({"id": id, "type": "message", "role": "assistant", "model": model, "content": content,
                   "stop_reason": stop, "stop_sequence": null, "usage": usage}),
        );
    }
    // As Anthropic streams it: everything but the final output count in message_start.
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![named(
        "message_start",
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": start_usage}}),
    )];
    if tools {
        events.push(named("content_block_start", json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})));
        for part in ["{\"city\":", "\"Paris\"}"] {
            events.push(named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": part}}),
            ));
        }
    } else {
        events.push(named(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ));
        events.push(named("ping", json!({"type": "ping"})));
        for w in ANSWER {
            events.push(named(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": w}}),
            ));
        }
    }
    events.push(named(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(named(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
        "usage": {"output_tokens": out_tokens}}),
    ));
    events.push(named("message_stop", json!({"type": "message_stop"})));
    let break_after = (model == "mock-break").then_some(3);
    sse_body(obs, events, gap_for(&model), break_after)
}
