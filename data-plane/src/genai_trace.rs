//! A finished request as OpenTelemetry spans in the GenAI semantic conventions (pinned to
//! [`SEMCONV_VERSION`]): one server span for the request, one client span per upstream attempt
//! under it, and events for the decisions in between.
//!
//! Built on the log worker from the same record as the request log, after the response, so the
//! request path never creates a span object. Pure: no I/O, no clocks.

use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as AnyValueKind, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::Value;
use weir_proto::logs::RequestLog;

use crate::trace_context::{SpanId, TraceContext};

/// The GenAI semantic-conventions release the attributes follow.
pub const SEMCONV_VERSION: &str = "1.37.0";
/// Its schema URL.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

/// What the request path measured about one attempt, beyond the request log's attempt row.
#[derive(Debug, Clone)]
pub struct AttemptTrace {
    /// The attempt's client span (also sent upstream in `traceparent`).
    pub span_id: SpanId,
    /// From the request's arrival to the attempt's send, in nanoseconds.
    pub offset_ns: u64,
    /// The provider's wire protocol (`openai`, `anthropic`).
    pub provider_kind: String,
    /// Upstream host and port.
    pub server: Option<(String, u16)>,
}

/// The trace side of a finished request.
#[derive(Debug, Clone)]
pub struct TraceParts {
    /// Trace and span ids.
    pub ctx: TraceContext,
    /// Arrival, Unix nanoseconds.
    pub start_unix_nanos: u64,
    /// One per attempt row of the log, in the same order.
    pub attempts: Vec<AttemptTrace>,
    /// Parameters of the request body (`max_tokens`, `temperature`, …).
    pub request_params: Vec<KeyValue>,
    /// What the answering response said about itself.
    pub response: ResponseFacts,
    /// Cost at the node's price, picodollars.
    pub cost_pusd: Option<i64>,
}

/// Id, model and finish reasons of a response, from its body or its stream events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseFacts {
    /// `gen_ai.response.id`.
    pub id: Option<String>,
    /// `gen_ai.response.model`.
    pub model: Option<String>,
    /// `gen_ai.response.finish_reasons`, in choice order.
    pub finish_reasons: Vec<String>,
}

impl ResponseFacts {
    /// Reads a whole response body or one stream event (chat chunks, Anthropic and Responses
    /// events alike).
    pub fn observe(&mut self, v: &Value) {
        // The object that names the response: the body itself, Anthropic's `message_start`
        // message, or a Responses event's `response`.
        let named = v
            .get("message")
            .filter(|m| m.get("id").is_some())
            .or_else(|| v.get("response").filter(|r| r.is_object()))
            .unwrap_or(v);
        if self.id.is_none() {
            self.id = named.get("id").and_then(Value::as_str).map(str::to_string);
        }
        if self.model.is_none() {
            self.model = named
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for c in choices {
                if let Some(r) = c.get("finish_reason").and_then(Value::as_str) {
                    self.finish_reasons.push(r.to_string());
                }
            }
        }
        for stop in [v.get("stop_reason"), v.pointer("/delta/stop_reason")] {
            if let Some(r) = stop.and_then(Value::as_str) {
                self.finish_reasons.push(r.to_string());
            }
        }
        // A Responses object's terminal status is its finish reason.
        let is_response = v.get("object").and_then(Value::as_str) == Some("response")
            || v.get("type").and_then(Value::as_str) == Some("response.completed");
        if let Some(s) = named.get("status").and_then(Value::as_str) {
            if is_response && matches!(s, "completed" | "incomplete" | "failed" | "cancelled") {
                self.finish_reasons.push(s.to_string());
            }
        }
    }
}

/// `gen_ai.request.*` attributes from a request body.
pub fn request_params(body: &Value) -> Vec<KeyValue> {
    let mut out = Vec::new();
    let num = |k: &str| body.get(k).and_then(Value::as_f64);
    let int = |k: &str| body.get(k).and_then(Value::as_i64);
    if let Some(n) = int("max_tokens")
        .or_else(|| int("max_completion_tokens"))
        .or_else(|| int("max_output_tokens"))
    {
        out.push(kv_i64("gen_ai.request.max_tokens", n));
    }
    for (field, attr) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(x) = num(field) {
            out.push(kv_f64(attr, x));
        }
    }
    if let Some(k) = num("top_k") {
        out.push(kv_f64("gen_ai.request.top_k", k));
    }
    if let Some(s) = int("seed") {
        out.push(kv_i64("gen_ai.request.seed", s));
    }
    if let Some(n) = int("n").filter(|n| *n != 1) {
        out.push(kv_i64("gen_ai.request.choice.count", n));
    }
    let stops: Vec<String> = match body.get("stop").or_else(|| body.get("stop_sequences")) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if !stops.is_empty() {
        out.push(kv_strs("gen_ai.request.stop_sequences", stops));
    }
    if let Some(f) = body.get("encoding_format").and_then(Value::as_str) {
        out.push(kv_strs(
            "gen_ai.request.encoding_formats",
            vec![f.to_string()],
        ));
    }
    out
}

/// The GenAI operation name of a Weir operation.
pub fn operation_name(operation: &str) -> &'static str {
    match operation {
        "embeddings" => "embeddings",
        // Chat Completions, Responses and Anthropic Messages are all chat turns.
        _ => "chat",
    }
}

fn route(operation: &str) -> &'static str {
    match operation {
        "chat_completions" => "/v1/chat/completions",
        "responses" => "/v1/responses",
        "embeddings" => "/v1/embeddings",
        "messages" => "/v1/messages",
        _ => "/v1",
    }
}

/// The spans of one request: the server span first, then one client span per attempt.
pub fn spans(log: &RequestLog, t: &TraceParts) -> Vec<Span> {
    let start = t.start_unix_nanos;
    let end = start + log.duration_us * 1000;
    let op = operation_name(&log.operation);
    let trace_id = t.ctx.trace_id.to_vec();
    let failed = log.outcome != "success";

    let mut attrs = vec![
        kv_str("http.request.method", "POST"),
        kv_str("http.route", route(&log.operation)),
        kv_i64("http.response.status_code", log.status_code as i64),
        kv_str("gen_ai.operation.name", op),
        kv_str("gen_ai.request.model", &log.model_key),
        kv_str("weir.operation", &log.operation),
        kv_str("weir.request_id", &log.request_id),
        kv_str("weir.outcome", &log.outcome),
        kv_bool("weir.stream", log.stream),
        kv_i64("weir.attempt_count", log.attempts.len() as i64),
        kv_str("weir.trace_origin", t.ctx.origin),
    ];
    if let Ok(id) = uuid::Uuid::from_slice(&log.log_id) {
        attrs.push(kv_str("weir.log_id", &id.to_string()));
    }
    if let Some(c) = &log.caller {
        for (k, v) in [
            ("user.id", &c.user_id),
            ("weir.api_key.id", &c.api_key_id),
            ("weir.team.id", &c.team_id),
            ("weir.service_account.id", &c.service_account_id),
        ] {
            if !v.is_empty() {
                attrs.push(kv_str(k, v));
            }
        }
    }
    for tag in &log.tags {
        attrs.push(kv_str(&format!("weir.tag.{}", tag.key), &tag.value));
    }
    if let Some(h) = &log.harness {
        attrs.push(kv_str("weir.harness", &h.key));
        if !h.version.is_empty() {
            attrs.push(kv_str("weir.harness.version", &h.version));
        }
    }
    // `session.id` is what Phoenix (OpenInference), Langfuse and Openlayer group sessions by.
    if !log.session_id.is_empty() {
        attrs.push(kv_str("session.id", &log.session_id));
        attrs.push(kv_str("weir.session.source", &log.session_source));
    }
    if !log.turn_kind.is_empty() {
        attrs.push(kv_str("weir.turn_kind", &log.turn_kind));
    }
    if let Some(u) = &log.usage {
        push_usage(&mut attrs, u);
    }
    if let Some(c) = t.cost_pusd {
        attrs.push(kv_f64("weir.cost.usd", c as f64 / 1e12));
        attrs.push(kv_i64("weir.cost.pusd", c));
    }
    if failed {
        attrs.push(kv_str("error.type", &log.outcome));
    }

    let mut events = Vec::new();
    if log
        .caller
        .as_ref()
        .is_some_and(|c| !c.api_key_id.is_empty())
    {
        events.push(event(start, "weir.authenticated", vec![]));
    }
    match log.outcome.as_str() {
        "rate_limited" | "budget_error" => events.push(event(
            start,
            "weir.limits.refused",
            vec![
                kv_str("weir.limits.decision", "refused"),
                kv_str("weir.limits.reason", &log.outcome),
            ],
        )),
        _ if !log.attempts.is_empty() => {
            events.push(event(
                start,
                "weir.limits.admitted",
                vec![kv_str("weir.limits.decision", "admitted")],
            ));
            let first = &log.attempts[0];
            events.push(event(
                start + t.attempts.first().map_or(0, |a| a.offset_ns),
                "weir.route",
                vec![
                    kv_str("weir.route.model", &log.model_key),
                    kv_str("weir.route.provider", &first.provider_key),
                    kv_str("weir.route.upstream_model", &first.upstream_model),
                ],
            ));
        }
        _ => {}
    }
    for (i, pair) in log.attempts.windows(2).enumerate() {
        let at = start + t.attempts.get(i + 1).map_or(0, |a| a.offset_ns);
        events.push(event(
            at,
            "weir.fallback",
            vec![
                kv_str("weir.fallback.from", &pair[0].provider_key),
                kv_str("weir.fallback.to", &pair[1].provider_key),
                kv_str("weir.fallback.reason", fallback_reason(&pair[0])),
            ],
        ));
    }

    let mut out = vec![Span {
        trace_id: trace_id.clone(),
        span_id: t.ctx.span_id.to_vec(),
        trace_state: t.ctx.tracestate.clone().unwrap_or_default(),
        parent_span_id: t.ctx.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        // W3C flags (sampled) plus "parent is remote" when the caller's span is the parent.
        flags: 0x100
            | if t.ctx.parent_span_id.is_some() {
                0x200
            } else {
                0
            }
            | 1,
        name: format!("POST {}", route(&log.operation)),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: attrs,
        events,
        status: Some(status(failed, &log.error_message)),
        ..Default::default()
    }];

    for (a, at) in log.attempts.iter().zip(&t.attempts) {
        let a_start = start + at.offset_ns;
        let mut attrs = vec![
            kv_str("gen_ai.operation.name", op),
            kv_str("gen_ai.provider.name", provider_name(&at.provider_kind)),
            kv_str("gen_ai.request.model", &a.upstream_model),
            kv_str("weir.provider.key", &a.provider_key),
            kv_i64("weir.attempt.number", a.number as i64),
            kv_bool("weir.attempt.produced_response", a.produced_response),
        ];
        if let Some((host, port)) = &at.server {
            attrs.push(kv_str("server.address", host));
            attrs.push(kv_i64("server.port", *port as i64));
        }
        if a.status_code != 0 {
            attrs.push(kv_i64("http.response.status_code", a.status_code as i64));
        }
        attrs.extend(t.request_params.iter().cloned());
        let attempt_failed = !a.error_kind.is_empty();
        if attempt_failed {
            let kind = if a.status_code >= 400 {
                a.status_code.to_string()
            } else {
                a.error_kind.clone()
            };
            attrs.push(kv_str("error.type", &kind));
        }
        if a.produced_response {
            if let Some(m) = &t.response.model {
                attrs.push(kv_str("gen_ai.response.model", m));
            }
            if let Some(id) = &t.response.id {
                attrs.push(kv_str("gen_ai.response.id", id));
            }
            if !t.response.finish_reasons.is_empty() {
                attrs.push(kv_strs(
                    "gen_ai.response.finish_reasons",
                    t.response.finish_reasons.clone(),
                ));
            }
            if let Some(u) = &log.usage {
                push_usage(&mut attrs, u);
            }
            if let Some(ttfb) = log.ttfb_us.filter(|_| log.stream) {
                attrs.push(kv_f64("weir.time_to_first_chunk_s", ttfb as f64 / 1e6));
            }
        }
        out.push(Span {
            trace_id: trace_id.clone(),
            span_id: at.span_id.to_vec(),
            parent_span_id: t.ctx.span_id.to_vec(),
            // The parent (the server span) is local.
            flags: 0x100 | 1,
            name: format!("{op} {}", a.upstream_model),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: a_start,
            end_time_unix_nano: a_start + a.duration_us * 1000,
            attributes: attrs,
            status: Some(status(attempt_failed, &a.error_message)),
            ..Default::default()
        });
    }
    out
}

/// Puts message content on the client span of the answering attempt (the last client span
/// when none answered; the server span when there was no attempt).
pub fn add_content(spans: &mut [Span], c: &crate::genai_content::Content, legacy: bool) {
    let answered = |s: &Span| {
        s.attributes.iter().any(|kv| {
            kv.key == "weir.attempt.produced_response"
                && kv.value.as_ref().and_then(|v| v.value.as_ref())
                    == Some(&AnyValueKind::BoolValue(true))
        })
    };
    let client = SpanKind::Client as i32;
    let target = spans
        .iter()
        .rposition(|s| s.kind == client && answered(s))
        .or_else(|| spans.iter().rposition(|s| s.kind == client))
        .unwrap_or(0);
    let Some(span) = spans.get_mut(target) else {
        return;
    };
    for (key, v) in [
        ("gen_ai.system_instructions", &c.system),
        ("gen_ai.input.messages", &c.input),
        ("gen_ai.output.messages", &c.output),
    ] {
        if let Some(v) = v {
            span.attributes.push(kv_str(key, v));
        }
    }
    if legacy {
        for (key, value) in crate::genai_content::legacy_attributes(c) {
            span.attributes.push(kv_str(&key, &value));
        }
    }
}

/// Makes the server span a root (same trace, no parent) with a link to the caller's span, for
/// back ends that hide spans whose parent they never received.
pub fn make_new_root(spans: &mut [Span]) {
    let Some(server) = spans.first_mut() else {
        return;
    };
    if server.parent_span_id.is_empty() {
        return;
    }
    let parent = std::mem::take(&mut server.parent_span_id);
    server
        .links
        .push(opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: server.trace_id.clone(),
            span_id: parent,
            trace_state: server.trace_state.clone(),
            attributes: vec![kv_str("weir.link", "caller")],
            dropped_attributes_count: 0,
            flags: 0x300 | (server.flags & 0xff),
        });
    // No parent now, so "parent is remote" no longer applies.
    server.flags &= !0x200;
}

/// Wraps spans with the node's resource and Weir's instrumentation scope.
pub fn resource_spans(resource: &[KeyValue], spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: resource.to_vec(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "weir".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            spans,
            schema_url: SCHEMA_URL.into(),
        }],
        schema_url: SCHEMA_URL.into(),
    }
}

/// The node's resource attributes.
pub fn resource(service_name: &str, node_id: &str, group: &str) -> Vec<KeyValue> {
    vec![
        kv_str("service.name", service_name),
        kv_str("service.version", env!("CARGO_PKG_VERSION")),
        kv_str("service.instance.id", node_id),
        kv_str("weir.fleet_group", group),
    ]
}

fn provider_name(kind: &str) -> &str {
    // Well-known `gen_ai.provider.name` values; an OpenAI-compatible upstream speaks OpenAI's
    // protocol whoever runs it.
    match kind {
        "anthropic" => "anthropic",
        _ => "openai",
    }
}

fn fallback_reason(a: &weir_proto::logs::Attempt) -> &str {
    if a.status_code >= 400 {
        "upstream_status"
    } else if a.error_kind.is_empty() {
        "unknown"
    } else {
        &a.error_kind
    }
}

fn push_usage(attrs: &mut Vec<KeyValue>, u: &weir_proto::logs::Usage) {
    if let Some(i) = u.input_tokens {
        attrs.push(kv_i64("gen_ai.usage.input_tokens", i as i64));
    }
    if let Some(o) = u.output_tokens {
        attrs.push(kv_i64("gen_ai.usage.output_tokens", o as i64));
    }
    if let Some(c) = u.cached_input_tokens {
        attrs.push(kv_i64("weir.usage.cached_input_tokens", c as i64));
    }
}

fn status(failed: bool, message: &str) -> Status {
    if failed {
        Status {
            code: StatusCode::Error as i32,
            message: message.to_string(),
        }
    } else {
        Status::default()
    }
}

fn event(at: u64, name: &str, attributes: Vec<KeyValue>) -> Event {
    Event {
        time_unix_nano: at,
        name: name.into(),
        attributes,
        dropped_attributes_count: 0,
    }
}

fn kv(key: &str, v: AnyValueKind) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
    }
}
fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, AnyValueKind::StringValue(v.into()))
}
fn kv_i64(key: &str, v: i64) -> KeyValue {
    kv(key, AnyValueKind::IntValue(v))
}
fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, AnyValueKind::DoubleValue(v))
}
fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, AnyValueKind::BoolValue(v))
}
fn kv_strs(key: &str, v: Vec<String>) -> KeyValue {
    kv(
        key,
        AnyValueKind::ArrayValue(ArrayValue {
            values: v
                .into_iter()
                .map(|s| AnyValue {
                    value: Some(AnyValueKind::StringValue(s)),
                })
                .collect(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weir_proto::logs::{Attempt, Caller, Tag, Usage};

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a AnyValueKind> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    fn str_attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
        match attr(s, key)? {
            AnyValueKind::StringValue(v) => Some(v),
            _ => None,
        }
    }

    fn int_attr(s: &Span, key: &str) -> Option<i64> {
        match attr(s, key)? {
            AnyValueKind::IntValue(v) => Some(*v),
            _ => None,
        }
    }

    fn fallback_log() -> (RequestLog, TraceParts) {
        let log = RequestLog {
            log_id: uuid::Uuid::now_v7().as_bytes().to_vec(),
            request_id: "req-1".into(),
            operation: "chat_completions".into(),
            model_key: "gpt".into(),
            status_code: 200,
            outcome: "success".into(),
            duration_us: 9_000,
            usage: Some(Usage {
                input_tokens: Some(12),
                output_tokens: Some(5),
                ..Default::default()
            }),
            caller: Some(Caller {
                api_key_id: "k1".into(),
                user_id: "u1".into(),
                ..Default::default()
            }),
            tags: vec![Tag {
                key: "service".into(),
                value: "billing".into(),
            }],
            attempts: vec![
                Attempt {
                    number: 1,
                    provider_key: "primary".into(),
                    upstream_model: "gpt-4o".into(),
                    status_code: 503,
                    error_kind: "upstream_status".into(),
                    error_message: "overloaded".into(),
                    duration_us: 2_000,
                    ..Default::default()
                },
                Attempt {
                    number: 2,
                    provider_key: "backup".into(),
                    upstream_model: "claude".into(),
                    status_code: 200,
                    duration_us: 5_000,
                    produced_response: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut response = ResponseFacts::default();
        response.observe(&json!({"id": "chatcmpl-9", "model": "gpt-4o-2024",
            "choices": [{"index": 0, "finish_reason": "stop"}]}));
        let parts = TraceParts {
            ctx: TraceContext {
                trace_id: [1; 16],
                parent_span_id: Some([2; 8]),
                span_id: [3; 8],
                sampled: true,
                tracestate: None,
                origin: "traceparent",
            },
            start_unix_nanos: 1_000_000_000,
            attempts: vec![
                AttemptTrace {
                    span_id: [4; 8],
                    offset_ns: 100_000,
                    provider_kind: "openai".into(),
                    server: Some(("api.openai.com".into(), 443)),
                },
                AttemptTrace {
                    span_id: [5; 8],
                    offset_ns: 2_200_000,
                    provider_kind: "anthropic".into(),
                    server: None,
                },
            ],
            request_params: request_params(
                &json!({"max_tokens": 64, "temperature": 0.2, "stop": "END"}),
            ),
            response,
            cost_pusd: Some(2_000_000_000_000),
        };
        (log, parts)
    }

    #[test]
    fn a_fallback_is_a_server_span_with_two_client_spans_in_order() {
        let (log, parts) = fallback_log();
        let spans = spans(&log, &parts);
        assert_eq!(spans.len(), 3);
        let (server, first, second) = (&spans[0], &spans[1], &spans[2]);
        assert_eq!(server.name, "POST /v1/chat/completions");
        assert_eq!(server.kind, SpanKind::Server as i32);
        assert_eq!(server.parent_span_id, vec![2; 8]);
        assert_eq!(
            server.end_time_unix_nano - server.start_time_unix_nano,
            9_000_000
        );
        assert_eq!(str_attr(server, "user.id"), Some("u1"));
        assert_eq!(str_attr(server, "weir.tag.service"), Some("billing"));
        assert_eq!(str_attr(server, "weir.request_id"), Some("req-1"));
        assert_eq!(int_attr(server, "weir.cost.pusd"), Some(2_000_000_000_000));
        let names: Vec<&str> = server.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "weir.authenticated",
                "weir.limits.admitted",
                "weir.route",
                "weir.fallback"
            ]
        );
        for (span, id) in [(first, [4u8; 8]), (second, [5; 8])] {
            assert_eq!(span.kind, SpanKind::Client as i32);
            assert_eq!(span.parent_span_id, vec![3; 8]);
            assert_eq!(span.span_id, id.to_vec());
            assert_eq!(span.trace_id, vec![1; 16]);
        }
        assert_eq!(first.name, "chat gpt-4o");
        assert_eq!(str_attr(first, "error.type"), Some("503"));
        assert_eq!(
            first.status.as_ref().unwrap().code,
            StatusCode::Error as i32
        );
        assert_eq!(str_attr(first, "server.address"), Some("api.openai.com"));
        assert_eq!(
            str_attr(first, "gen_ai.response.id"),
            None,
            "only the answering attempt"
        );
        assert_eq!(second.name, "chat claude");
        assert_eq!(str_attr(second, "gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(str_attr(second, "gen_ai.response.id"), Some("chatcmpl-9"));
        assert_eq!(
            str_attr(second, "gen_ai.response.model"),
            Some("gpt-4o-2024")
        );
        assert_eq!(int_attr(second, "gen_ai.usage.input_tokens"), Some(12));
        assert_eq!(int_attr(second, "gen_ai.usage.output_tokens"), Some(5));
        assert_eq!(int_attr(second, "gen_ai.request.max_tokens"), Some(64));
        assert!(
            matches!(attr(second, "gen_ai.request.stop_sequences"), Some(AnyValueKind::ArrayValue(a)) if a.values.len() == 1)
        );
        assert_eq!(second.start_time_unix_nano, 1_002_200_000);
    }

    #[test]
    fn a_new_root_drops_the_remote_parent_for_a_link() {
        let (log, parts) = fallback_log();
        let mut s = spans(&log, &parts);
        make_new_root(&mut s);
        assert!(s[0].parent_span_id.is_empty());
        assert_eq!(s[0].links.len(), 1);
        assert_eq!(s[0].links[0].span_id, vec![2; 8], "the caller's span");
        assert_eq!(s[0].links[0].trace_id, vec![1; 16]);
        assert_eq!(s[0].flags & 0x200, 0);
        // Children keep the gateway's server span as parent.
        assert!(s[1..].iter().all(|c| c.parent_span_id == vec![3; 8]));
        // Without a caller there is nothing to link.
        let (log, mut parts) = fallback_log();
        parts.ctx.parent_span_id = None;
        let mut s = spans(&log, &parts);
        make_new_root(&mut s);
        assert!(s[0].links.is_empty());
    }

    #[test]
    fn a_refusal_has_no_client_span_and_says_why() {
        let (mut log, mut parts) = fallback_log();
        log.attempts.clear();
        parts.attempts.clear();
        log.outcome = "budget_error".into();
        log.status_code = 429;
        log.error_message = "budget exceeded".into();
        let spans = spans(&log, &parts);
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(str_attr(s, "error.type"), Some("budget_error"));
        assert_eq!(s.status.as_ref().unwrap().message, "budget exceeded");
        assert!(s.events.iter().any(|e| e.name == "weir.limits.refused"));
    }

    #[test]
    fn response_facts_from_bodies_and_streams() {
        let cases: Vec<(Vec<Value>, ResponseFacts)> = vec![
            (
                vec![
                    json!({"id": "c1", "model": "m", "choices": [{"finish_reason": "tool_calls"}]}),
                ],
                ResponseFacts {
                    id: Some("c1".into()),
                    model: Some("m".into()),
                    finish_reasons: vec!["tool_calls".into()],
                },
            ),
            (
                vec![
                    json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude"}}),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
                ],
                ResponseFacts {
                    id: Some("msg_1".into()),
                    model: Some("claude".into()),
                    finish_reasons: vec!["end_turn".into()],
                },
            ),
            (
                vec![
                    json!({"id": "msg_2", "type": "message", "model": "claude", "stop_reason": "max_tokens"}),
                ],
                ResponseFacts {
                    id: Some("msg_2".into()),
                    model: Some("claude".into()),
                    finish_reasons: vec!["max_tokens".into()],
                },
            ),
            (
                vec![
                    json!({"type": "response.completed", "response": {"id": "resp_1", "model": "gpt", "status": "completed"}}),
                ],
                ResponseFacts {
                    id: Some("resp_1".into()),
                    model: Some("gpt".into()),
                    finish_reasons: vec!["completed".into()],
                },
            ),
            (
                vec![
                    json!({"id": "c2", "model": "m", "choices": [{"delta": {"content": "a"}, "finish_reason": null}]}),
                    json!({"id": "c2", "model": "m", "choices": [{"delta": {}, "finish_reason": "stop"}]}),
                ],
                ResponseFacts {
                    id: Some("c2".into()),
                    model: Some("m".into()),
                    finish_reasons: vec!["stop".into()],
                },
            ),
            (
                vec![json!("not an object"), json!(null)],
                ResponseFacts::default(),
            ),
        ];
        for (events, want) in cases {
            let mut f = ResponseFacts::default();
            for e in &events {
                f.observe(e);
            }
            assert_eq!(f, want, "{events:?}");
        }
    }
}
