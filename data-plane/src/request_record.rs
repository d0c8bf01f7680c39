//! What the request path hands to the log worker, and how the worker turns it into a
//! `weir.logs.v1.RequestLog`.
//!
//! The request path only moves cheap things into the record (reference-counted bytes, a header
//! map, timings); parsing, redaction and capping happen in [`RequestRecord::into_log`] on the
//! worker. A [`RecordGuard`] makes sure a request that is abandoned half-way (the client went
//! away and its handler was dropped) is still logged, as cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;
use weir_proto::logs::{self as pb, Attempt, Caller, Harness, PolicyMeta, RequestLog, Tag};

use crate::log_shipper::LogQueue;
use crate::payload_policy;
use crate::snapshot::{KeyInfo, Policy};
use crate::sse_transcript::event_data;
use crate::usage::{self, StreamFacts};

/// One upstream try.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Provider key.
    pub provider_key: String,
    /// Upstream model.
    pub upstream_model: String,
    /// 0 when no response arrived.
    pub status_code: u16,
    /// Empty on success.
    pub error_kind: &'static str,
    /// Human-readable failure.
    pub error_message: String,
    /// From send to the end of the attempt.
    pub duration: Duration,
    /// From send to response headers.
    pub ttfb: Option<Duration>,
    /// Whether the client got this attempt's response.
    pub produced_response: bool,
    /// Its span, when the request is traced.
    pub trace: Option<crate::genai_trace::AttemptTrace>,
    /// `gen_ai.provider.name` of the provider's protocol.
    pub provider_name: &'static str,
    /// The provider's cost multiplier, parts per million.
    pub price_multiplier_ppm: u32,
}

impl AttemptRecord {
    /// A fresh attempt on a target.
    pub fn for_target(provider_key: &str, upstream_model: &str) -> Self {
        AttemptRecord {
            provider_key: provider_key.to_string(),
            upstream_model: upstream_model.to_string(),
            status_code: 0,
            error_kind: "",
            error_message: String::new(),
            duration: Duration::ZERO,
            ttfb: None,
            produced_response: false,
            trace: None,
            provider_name: "openai",
            price_multiplier_ppm: weir_proto::pricing::PPM_ONE,
        }
    }
}

/// A request as the request path saw it.
#[derive(Debug)]
pub struct RequestRecord {
    /// UUIDv7 minted on arrival.
    pub log_id: Uuid,
    /// Correlation id.
    pub request_id: String,
    /// `chat_completions`, …
    pub operation: &'static str,
    /// Streaming request.
    pub stream: bool,
    /// Arrival.
    pub started: Instant,
    /// Model key the client asked for.
    pub model_key: String,
    /// The authenticated key.
    pub key: Arc<KeyInfo>,
    /// Payload policy in force for this request.
    pub policy: Option<Arc<Policy>>,
    /// Status sent to the client.
    pub status_code: u16,
    /// Outcome name.
    pub outcome: &'static str,
    /// Error shown to the client, if any.
    pub error_message: String,
    /// Arrival to last byte.
    pub duration: Duration,
    /// Arrival to first byte sent.
    pub ttfb: Option<Duration>,
    /// Request headers as received (redacted later).
    pub request_headers: HeaderMap,
    /// Request body as received.
    pub request_body: Bytes,
    /// Whole response body (non-streaming).
    pub response_body: Bytes,
    /// Raw SSE events of a streamed response, in order (bounded by the relay).
    pub stream_events: Vec<Bytes>,
    /// Events the relay saw in total, kept or not.
    pub stream_events_seen: u32,
    /// The last usage-bearing event, kept even when `stream_events` is full.
    pub last_usage_event: Option<Bytes>,
    /// Upstream tries in order.
    pub attempts: Vec<AttemptRecord>,
    /// Caller tags from the `x-weir-*` headers, validated.
    pub tags: Vec<(String, String)>,
    /// The agent session, when the request names one.
    pub session: Option<crate::agent_session::Session>,
    /// The turn kind, when the harness says.
    pub turn_kind: Option<&'static str>,
    /// Limits the request was admitted under, to count its tokens and cost against.
    pub limits: Vec<(String, Arc<crate::limits::SubjectLimits>)>,
    /// The limiter that admitted it.
    pub limiter: Option<Arc<crate::limits::Limiter>>,
    /// The model's price at admission, for the node's own spend count.
    pub price: Option<Arc<weir_proto::pricing::PriceSheet>>,
    /// Node identity.
    pub node_id: Arc<str>,
    /// Fleet group.
    pub group: Arc<str>,
    /// The request's trace, when spans are exported.
    pub trace: Option<crate::trace_context::TraceContext>,
    /// Arrival, Unix nanoseconds (span start times).
    pub start_unix_nanos: u64,
}

/// What the worker makes of a record.
pub struct Built {
    /// The request log.
    pub log: RequestLog,
    /// Budget spend to settle when the log is acked.
    pub spend: Option<crate::limits::SpendTicket>,
    /// The trace side, when the request is traced and sampled.
    pub trace: Option<crate::genai_trace::TraceParts>,
    /// What metrics need beyond the log.
    pub metrics: crate::genai_metrics::Extra,
}

/// What a record holds besides its bodies and events: the struct, headers and strings, roughly.
const RECORD_OVERHEAD_BYTES: usize = 1024;

impl RequestRecord {
    /// About the memory this record holds while it waits for the log worker: its bodies and
    /// stream events (which dominate when they are large) plus a fixed allowance for the rest.
    pub fn held_bytes(&self) -> usize {
        let events: usize = self.stream_events.iter().map(Bytes::len).sum();
        RECORD_OVERHEAD_BYTES
            + self.request_body.len()
            + self.response_body.len()
            + events
            + self.last_usage_event.as_ref().map_or(0, Bytes::len)
    }

    /// A record for a request that just authenticated.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        operation: &'static str,
        log_id: Uuid,
        request_id: String,
        started: Instant,
        key: Arc<KeyInfo>,
        policy: Option<Arc<Policy>>,
        request_headers: HeaderMap,
        node_id: Arc<str>,
        group: Arc<str>,
    ) -> Self {
        RequestRecord {
            log_id,
            request_id,
            operation,
            stream: false,
            started,
            model_key: String::new(),
            key,
            policy,
            status_code: 0,
            outcome: "internal_error",
            error_message: String::new(),
            duration: Duration::ZERO,
            ttfb: None,
            request_headers,
            request_body: Bytes::new(),
            response_body: Bytes::new(),
            stream_events: Vec::new(),
            stream_events_seen: 0,
            last_usage_event: None,
            attempts: Vec::new(),
            tags: Vec::new(),
            limits: Vec::new(),
            limiter: None,
            price: None,
            session: None,
            turn_kind: None,
            node_id,
            group,
            trace: None,
            start_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }

    /// Builds the wire record (usage, tools, redacted and capped payloads) and counts its spend
    /// against budgets until the returned ticket is settled. Runs on the worker.
    pub fn into_log(mut self) -> Built {
        let traced = self.trace.as_ref().is_some_and(|c| c.sampled);
        let mut response_facts = crate::genai_trace::ResponseFacts::default();
        let policy = self.policy.clone();
        let mode = policy
            .as_ref()
            .map_or("redacted_payloads", |p| p.capture_mode.as_str());
        // Service-account traffic always keeps at least its summary row; a user who opted out
        // (or a disabled capture mode) keeps only the spend ledger.
        let service_account = !self.key.service_account_id.is_empty();
        let ledger_only =
            !service_account && (mode == "disabled" || !self.key.request_logging_enabled);
        let capture = !ledger_only && policy.as_ref().is_some_and(|p| p.captures_payloads());
        // Without payloads or a span to fill, only a few top-level fields are needed: the rest
        // of the bodies (an agent's whole conversation) is scanned, never built.
        let light = !capture && !traced;
        let request_json = light
            .then(|| {
                payload_policy::top_fields(
                    &self.request_body,
                    &["tools", "functions", "service_tier"],
                )
            })
            .flatten()
            .unwrap_or_else(|| payload_policy::body_value(&self.request_body));
        let request_tier = request_json.get("service_tier").cloned();
        let exposed = usage::exposed_tools(&request_json);
        let request_params = if traced {
            crate::genai_trace::request_params(&request_json)
        } else {
            Vec::new()
        };

        let (usage, invoked, response_wrapped) = if self.stream {
            let mut facts = StreamFacts::default();
            let mut events: Vec<Value> = Vec::new();
            let max_events = policy.as_ref().map_or(0, |p| p.stream_max_events as usize);
            let mut kept_all = true;
            for raw in &self.stream_events {
                let Some(data) = event_data(raw) else {
                    continue;
                };
                let v: Value = match serde_json::from_slice(&data) {
                    Ok(v) => v,
                    Err(_) => Value::String(String::from_utf8_lossy(&data).into_owned()),
                };
                facts.observe(&v);
                if traced {
                    response_facts.observe(&v);
                }
                if events.len() < max_events {
                    events.push(v);
                } else {
                    kept_all = false;
                }
            }
            if let Some(data) = self.last_usage_event.as_deref().and_then(event_data) {
                if let Ok(v) = serde_json::from_slice::<Value>(&data) {
                    facts.observe(&v);
                }
            }
            if (self.stream_events.len() as u32) < self.stream_events_seen {
                kept_all = false;
            }
            let usage_json = facts
                .usage
                .as_ref()
                .map(|u| serde_json::to_value(UsageJson::from(u)).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            // Built by moving the parts in: `json!` would serialize a deep copy of each.
            let wrapped = object([
                ("stream", Value::Bool(true)),
                ("events", Value::Array(events)),
                ("usage", usage_json),
                ("error", facts.error.clone().unwrap_or(Value::Null)),
            ]);
            let invoked = facts.invoked_tools();
            let produced = self.attempts.iter().rev().find(|a| a.produced_response);
            // A stream that ended before the provider's usage (client abort, cut upstream) is
            // billed anyway: its prompt is counted here and the row marked estimated.
            let usage = facts.usage.or_else(|| {
                produced.map(|a| pb::Usage {
                    input_tokens: Some(if light {
                        // The light parse kept only a few fields: read the whole prompt.
                        crate::token_estimate::prompt_tokens(
                            &payload_policy::body_value(&self.request_body),
                            &a.upstream_model,
                        )
                    } else {
                        crate::token_estimate::prompt_tokens(&request_json, &a.upstream_model)
                    }),
                    estimated: true,
                    ..pb::Usage::default()
                })
            });
            (usage, Some(invoked), (wrapped, !kept_all))
        } else {
            let produced = self.attempts.iter().any(|a| a.produced_response);
            // Nothing but the facts is needed from a light record's body: read them from the
            // bytes (none without a response), falling back to a parse for unusual shapes.
            let light_facts = match (light, produced) {
                (true, true) => usage::response_facts_light(self.operation, &self.response_body),
                (true, false) => Some((None, None)),
                (false, _) => None,
            };
            match light_facts {
                Some((usage, invoked)) => (usage, invoked, (Value::Null, false)),
                None => {
                    let body = light
                        .then(|| {
                            payload_policy::top_fields(
                                &self.response_body,
                                usage::RESPONSE_FACT_FIELDS,
                            )
                        })
                        .flatten()
                        .unwrap_or_else(|| payload_policy::body_value(&self.response_body));
                    if traced {
                        response_facts.observe(&body);
                    }
                    let (usage, invoked) = if produced {
                        usage::response_facts(self.operation, &body)
                    } else {
                        (None, None)
                    };
                    (usage, invoked, (object([("body", body)]), false))
                }
            }
        };

        let (request_payload, request_truncated, response_payload, response_truncated) =
            match (&policy, capture) {
                (Some(p), true) => {
                    // Redaction and the rest run only for payloads that are kept.
                    let mut req = payload_policy::wrap_request(&self.request_headers, request_json);
                    let mut resp = response_wrapped.0;
                    payload_policy::redact_keys(&mut resp);
                    for path in &p.redaction_paths {
                        path.apply(&mut req);
                        path.apply(&mut resp);
                    }
                    let req_bulky = payload_policy::truncate_bulky(&mut req);
                    let resp_bulky = payload_policy::truncate_bulky(&mut resp);
                    let (req, rt) = payload_policy::cap(req, p.request_max_bytes as usize);
                    let (resp, rt2) = payload_policy::cap(resp, p.response_max_bytes as usize);
                    let (rt, rt2) = (rt || req_bulky, rt2 || resp_bulky);
                    (req, rt, resp, rt2 || response_wrapped.1)
                }
                _ => (Vec::new(), false, Vec::new(), false),
            };

        let attempt_traces: Vec<crate::genai_trace::AttemptTrace> = if traced {
            self.attempts
                .iter_mut()
                .map(|a| {
                    a.trace
                        .take()
                        .unwrap_or_else(|| crate::genai_trace::AttemptTrace {
                            span_id: crate::trace_context::new_span_id(&mut rand::thread_rng()),
                            offset_ns: 0,
                            provider_kind: String::new(),
                            server: None,
                        })
                })
                .collect()
        } else {
            Vec::new()
        };
        let produced = self
            .attempts
            .iter()
            .rev()
            .find(|a| a.produced_response)
            .or(self.attempts.last());
        // Priced once for budgets, metrics and the span.
        // The tier the provider reported, else the one the request named.
        let usage = usage.map(|u| usage::with_tier(u, request_tier.as_ref()));
        let settled = self.settle(usage.as_ref());
        let cost_pusd = settled.cost();
        let spend = self.count_against_limits(usage.as_ref(), cost_pusd);
        let metrics = crate::genai_metrics::Extra {
            provider: produced.map(|a| a.provider_name),
            cost_pusd,
            pricing_status: settled.status(),
        };
        let trace = match self.trace.take() {
            Some(ctx) if traced => Some(crate::genai_trace::TraceParts {
                ctx,
                start_unix_nanos: self.start_unix_nanos,
                attempts: attempt_traces,
                request_params,
                response: response_facts,
                cost_pusd,
            }),
            _ => None,
        };
        let harness = crate::harness::classify(&self.request_headers);
        let user_agent = self
            .request_headers
            .get(http::header::USER_AGENT)
            .map(|v| crate::harness::cap_user_agent(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_default();
        let tags = self
            .tags
            .iter()
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let (session_id, session_source) = self
            .session
            .as_ref()
            .map(|s| (s.id.clone(), s.source.to_string()))
            .unwrap_or_default();
        let log = RequestLog {
            ledger_only,
            log_id: self.log_id.as_bytes().to_vec(),
            request_id: self.request_id,
            operation: self.operation.to_string(),
            stream: self.stream,
            model_key: self.model_key,
            provider_key: produced.map(|a| a.provider_key.clone()).unwrap_or_default(),
            upstream_model: produced
                .map(|a| a.upstream_model.clone())
                .unwrap_or_default(),
            status_code: self.status_code as u32,
            outcome: self.outcome.to_string(),
            error_message: self.error_message,
            duration_us: self.duration.as_micros() as u64,
            ttfb_us: self.ttfb.map(|d| d.as_micros() as u64),
            usage,
            caller: Some(Caller {
                api_key_id: self.key.id.clone(),
                user_id: self.key.user_id.clone(),
                team_id: self.key.team_id.clone(),
                service_account_id: self.key.service_account_id.clone(),
            }),
            node_id: self.node_id.to_string(),
            fleet_group: self.group.to_string(),
            harness: Some(Harness {
                key: harness.key.to_string(),
                label: harness.label.to_string(),
                version: harness.version.unwrap_or_default(),
                user_agent,
            }),
            session_id,
            session_source,
            turn_kind: self.turn_kind.unwrap_or_default().to_string(),
            tags,
            exposed_tool_count: exposed,
            invoked_tool_count: invoked,
            request_payload,
            response_payload,
            request_payload_truncated: request_truncated,
            response_payload_truncated: response_truncated,
            policy: policy.map(|p| PolicyMeta {
                capture_mode: p.capture_mode.clone(),
                request_max_bytes: p.request_max_bytes,
                response_max_bytes: p.response_max_bytes,
                stream_max_events: p.stream_max_events,
                policy_version: p.version.clone(),
            }),
            attempts: self
                .attempts
                .iter()
                .enumerate()
                .map(|(i, a)| Attempt {
                    number: i as u32 + 1,
                    provider_key: a.provider_key.clone(),
                    upstream_model: a.upstream_model.clone(),
                    status_code: a.status_code as u32,
                    error_kind: a.error_kind.to_string(),
                    error_message: a.error_message.clone(),
                    duration_us: a.duration.as_micros() as u64,
                    ttfb_us: a.ttfb.map(|d| d.as_micros() as u64),
                    produced_response: a.produced_response,
                })
                .collect(),
        };
        Built {
            log,
            spend,
            trace,
            metrics,
        }
    }
}

impl RequestRecord {
    /// The request's cost at the node's price, when usage and a price are known.
    fn settle(&self, usage: Option<&pb::Usage>) -> weir_proto::pricing::Pricing {
        let provider = self
            .attempts
            .iter()
            .rev()
            .find(|a| a.produced_response)
            .map_or(weir_proto::pricing::PPM_ONE, |a| a.price_multiplier_ppm);
        weir_proto::pricing::settle(
            usage,
            self.price.as_deref(),
            &[provider, self.key.price_multiplier_ppm],
        )
    }

    /// Counts the request's tokens and cost against the limits that admitted it.
    fn count_against_limits(
        &self,
        usage: Option<&pb::Usage>,
        cost: Option<i64>,
    ) -> Option<crate::limits::SpendTicket> {
        let limiter = self.limiter.as_ref()?;
        if self.limits.is_empty() {
            return None;
        }
        let tokens = usage
            .and_then(|u| {
                u.total_tokens.or(Some(
                    u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0),
                ))
            })
            .unwrap_or(0);
        let subjects: Vec<(&str, &crate::limits::SubjectLimits)> = self
            .limits
            .iter()
            .map(|(s, l)| (s.as_str(), l.as_ref()))
            .collect();
        limiter.record(&subjects, tokens, cost, crate::limits::now_ms())
    }
}

#[derive(serde::Serialize)]
struct UsageJson {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cached_input_tokens: Option<u64>,
    reasoning_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

impl From<&pb::Usage> for UsageJson {
    fn from(u: &pb::Usage) -> Self {
        UsageJson {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_input_tokens: u.cached_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

/// Owns a record while its request is in flight; submits it when finished, or as cancelled when
/// dropped unfinished.
pub struct RecordGuard {
    rec: Option<RequestRecord>,
    queue: LogQueue,
}

impl RecordGuard {
    /// Guards `rec`.
    pub fn new(rec: RequestRecord, queue: LogQueue) -> Self {
        RecordGuard {
            rec: Some(rec),
            queue,
        }
    }

    /// The record, for the request path to fill in.
    pub fn rec(&mut self) -> &mut RequestRecord {
        self.rec.as_mut().expect("record present until finished")
    }

    /// Sets the outcome and hands the record to the log queue.
    pub fn finish(mut self, status_code: u16, outcome: &'static str, error_message: String) {
        if let Some(mut rec) = self.rec.take() {
            rec.status_code = status_code;
            rec.outcome = outcome;
            rec.error_message = error_message;
            rec.duration = rec.started.elapsed();
            self.queue.submit(rec);
        }
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if let Some(mut rec) = self.rec.take() {
            // The handler was dropped before it finished: the client went away.
            rec.outcome = "cancelled";
            if rec.status_code == 0 {
                rec.status_code = 499;
            }
            rec.error_message = "client disconnected before the response completed".into();
            rec.duration = rec.started.elapsed();
            self.queue.submit(rec);
        }
    }
}

/// A UUIDv7 from this thread alone: the millisecond, then random bits. `Uuid::now_v7` orders
/// ids within a millisecond through one process-wide mutex, which every serving thread would
/// take for each request; nothing here needs order finer than the millisecond (listings and
/// indexes only need ids to grow with time, and ingest reads `created_at` from the millisecond).
pub fn time_ordered_id() -> Uuid {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        now.as_secs(),
        now.subsec_nanos(),
    ))
}

/// A JSON object of `fields`, moved in.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn time_ordered_ids_are_v7_of_this_millisecond_and_distinct() {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ids: Vec<Uuid> = (0..1000).map(|_| time_ordered_id()).collect();
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert_eq!(id.get_version_num(), 7);
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            let ms = secs * 1000 + u64::from(nanos / 1_000_000);
            assert!(
                (before..=after).contains(&ms),
                "{ms} outside {before}..={after}"
            );
        }
    }

    fn record(mode: &str, operation: &'static str, request: Value, response: Value) -> RequestLog {
        let key = Arc::new(KeyInfo {
            id: "k".into(),
            display_prefix: "weir_sk_x".into(),
            user_id: "u".into(),
            team_id: String::new(),
            service_account_id: String::new(),
            allowed_models: None,
            expires_at_ms: 0,
            request_logging_enabled: true,
            price_multiplier_ppm: weir_proto::pricing::PPM_ONE,
        });
        let policy = Arc::new(Policy {
            capture_mode: mode.into(),
            request_max_bytes: 1 << 20,
            response_max_bytes: 1 << 20,
            stream_max_events: 128,
            redaction_paths: Vec::new(),
            version: "1".into(),
        });
        let mut rec = RequestRecord::new(
            operation,
            time_ordered_id(),
            "r".into(),
            Instant::now(),
            key,
            Some(policy),
            HeaderMap::new(),
            "n".into(),
            "g".into(),
        );
        rec.request_body = Bytes::from(request.to_string());
        rec.response_body = Bytes::from(response.to_string());
        let mut attempt = AttemptRecord::for_target("p", "m");
        attempt.produced_response = true;
        rec.attempts.push(attempt);
        rec.into_log().log
    }

    /// A record without payloads reads only a few top-level fields; it must learn exactly what
    /// a record with payloads learns from whole bodies.
    #[test]
    fn records_without_payloads_learn_the_same_facts() {
        let cases = [
            (
                "chat_completions",
                json!({"model": "m", "service_tier": "flex", "messages": [{"role": "user", "content": "hi"}],
                       "tools": [{"type": "function"}, {"type": "function"}], "functions": [{}]}),
                json!({"choices": [{"message": {"tool_calls": [{}, {}, {}]}}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 2}}}),
            ),
            (
                "messages",
                json!({"model": "m", "system": "s", "messages": []}),
                json!({"content": [{"type": "tool_use"}, {"type": "text"}], "service_tier": "x",
                       "usage": {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 5, "service_tier": "batch"}}),
            ),
            (
                "responses",
                json!({"input": "hello"}),
                json!({"output": [{"type": "function_call"}], "service_tier": "priority",
                       "usage": {"input_tokens": 1, "output_tokens": 2}}),
            ),
            // Not JSON objects: both fall back to the whole (string) body.
            (
                "chat_completions",
                json!(["not", "an", "object"]),
                json!("oops"),
            ),
        ];
        for (op, req, resp) in cases {
            let light = record("summary_only", op, req.clone(), resp.clone());
            let full = record("redacted_payloads", op, req, resp);
            assert!(light.request_payload.is_empty() && !full.request_payload.is_empty());
            assert_eq!(light.usage, full.usage, "{op}");
            assert_eq!(light.exposed_tool_count, full.exposed_tool_count, "{op}");
            assert_eq!(light.invoked_tool_count, full.invoked_tool_count, "{op}");
        }
        let light = record(
            "summary_only",
            "chat_completions",
            json!({"service_tier": "flex", "tools": [{}, {}], "functions": [{}]}),
            json!({"choices": [{"message": {"tool_calls": [{}]}}], "usage": {"prompt_tokens": 1}}),
        );
        assert_eq!(light.exposed_tool_count, Some(3));
        assert_eq!(light.invoked_tool_count, Some(1));
        assert_eq!(light.usage.unwrap().service_tier, "flex");
    }
}
