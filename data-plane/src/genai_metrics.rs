//! Request metrics in the GenAI semantic conventions (v1.37.0) plus Weir's own, aggregated on
//! the log worker and exported as cumulative OTLP metrics.
//!
//! Attributes are bounded by construction: operation, provider name, the model key (bounded by
//! the config), outcome, status code, token type, pricing status. Never a request id, a key, a
//! user or a tag. Pure: the caller passes the clock.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value as AnyValueKind, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use weir_proto::logs::RequestLog;

use crate::genai_trace::{operation_name, SCHEMA_URL};

/// Bucket bounds the GenAI conventions advise for durations, in seconds.
const DURATION_BOUNDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// Bucket bounds the GenAI conventions advise for token counts.
const TOKEN_BOUNDS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket bounds for tool counts.
const TOOL_BOUNDS: &[f64] = &[0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

#[derive(Clone, Copy)]
enum Kind {
    Histogram(&'static [f64]),
    IntSum,
    DoubleSum,
    IntGauge,
}

struct Def {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    kind: Kind,
}

const DEFS: &[Def] = &[
    Def {
        name: "gen_ai.client.operation.duration",
        unit: "s",
        description: "GenAI operation duration.",
        kind: Kind::Histogram(DURATION_BOUNDS),
    },
    Def {
        name: "gen_ai.client.token.usage",
        unit: "{token}",
        description: "Input and output tokens used.",
        kind: Kind::Histogram(TOKEN_BOUNDS),
    },
    Def {
        name: "weir.time_to_first_chunk",
        unit: "s",
        description: "Time to the first chunk of a streamed answer, from the request's arrival.",
        kind: Kind::Histogram(DURATION_BOUNDS),
    },
    Def {
        name: "weir.requests",
        unit: "{request}",
        description: "Requests answered, by operation, outcome and status.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.request.duration",
        unit: "s",
        description: "Arrival to last byte, by operation and outcome.",
        kind: Kind::Histogram(DURATION_BOUNDS),
    },
    Def {
        name: "weir.tokens",
        unit: "{token}",
        description: "Tokens used, by model and token type.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.spend",
        unit: "USD",
        description: "Spend at the node's prices, by model.",
        kind: Kind::DoubleSum,
    },
    Def {
        name: "weir.usage_records",
        unit: "{record}",
        description: "Provider-backed requests by pricing status.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.tools.exposed",
        unit: "{tool}",
        description: "Tools offered per request.",
        kind: Kind::Histogram(TOOL_BOUNDS),
    },
    Def {
        name: "weir.tools.invoked",
        unit: "{tool}",
        description: "Tool calls per answer.",
        kind: Kind::Histogram(TOOL_BOUNDS),
    },
    Def {
        name: "weir.request_logs",
        unit: "{record}",
        description: "Request-log records of this node's pipeline, by state.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.spans",
        unit: "{span}",
        description: "Spans of this node's exporter, by state.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.config.nacks",
        unit: "{response}",
        description: "Config responses this node refused.",
        kind: Kind::IntSum,
    },
    Def {
        name: "weir.config.version",
        unit: "1",
        description: "The config version this node holds, per resource type (the counter part).",
        kind: Kind::IntGauge,
    },
    Def {
        name: "weir.config.stream_connected",
        unit: "1",
        description: "1 while the config stream is open.",
        kind: Kind::IntGauge,
    },
];

type Attrs = Vec<(&'static str, String)>;

#[derive(Default)]
struct Point {
    count: u64,
    sum: f64,
    buckets: Vec<u64>,
}

/// Cumulative aggregates since the node started.
pub struct Meter {
    start_ns: u64,
    points: BTreeMap<(usize, Attrs), Point>,
}

/// What the request log alone does not say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// `gen_ai.provider.name` of the answering (or last) attempt.
    pub provider: Option<&'static str>,
    /// Cost at the node's price.
    pub cost_pusd: Option<i64>,
    /// The pricing status the node settled (`priced`, `estimated`, `unpriced`,
    /// `usage_missing`); empty for requests that reached no provider.
    pub pricing_status: &'static str,
}

impl Meter {
    /// A meter whose cumulative points start at `start_ns`.
    pub fn new(start_ns: u64) -> Self {
        Meter {
            start_ns,
            points: BTreeMap::new(),
        }
    }

    fn add(&mut self, metric: &str, attrs: Attrs, value: f64) {
        let idx = DEFS
            .iter()
            .position(|d| d.name == metric)
            .expect("known metric");
        let p = self.points.entry((idx, attrs)).or_default();
        p.count += 1;
        p.sum += value;
        if let Kind::Histogram(bounds) = DEFS[idx].kind {
            if p.buckets.is_empty() {
                p.buckets = vec![0; bounds.len() + 1];
            }
            let i = bounds
                .iter()
                .position(|b| value <= *b)
                .unwrap_or(bounds.len());
            p.buckets[i] += 1;
        }
    }

    /// Sets a counter that the pipeline keeps itself (cumulative already).
    pub fn set_total(&mut self, metric: &str, attrs: Attrs, total: u64) {
        let idx = DEFS
            .iter()
            .position(|d| d.name == metric)
            .expect("known metric");
        let p = self.points.entry((idx, attrs)).or_default();
        p.count = 1;
        p.sum = total as f64;
    }

    /// Counts one finished request.
    pub fn record(&mut self, log: &RequestLog, extra: Extra) {
        let op = operation_name(&log.operation);
        let model = log.model_key.clone();
        let failed = log.outcome != "success";
        let mut base: Attrs = vec![
            ("weir.operation", log.operation.clone()),
            ("weir.outcome", log.outcome.clone()),
        ];
        self.add(
            "weir.request.duration",
            base.clone(),
            log.duration_us as f64 / 1e6,
        );
        base.push(("http.response.status_code", log.status_code.to_string()));
        base.push(("gen_ai.request.model", model.clone()));
        self.add("weir.requests", base, 1.0);
        if log.attempts.is_empty() {
            return;
        }
        let mut genai: Attrs = vec![
            ("gen_ai.operation.name", op.to_string()),
            (
                "gen_ai.provider.name",
                extra.provider.unwrap_or("openai").to_string(),
            ),
            ("gen_ai.request.model", model.clone()),
        ];
        if failed {
            genai.push(("error.type", log.outcome.clone()));
        }
        self.add(
            "gen_ai.client.operation.duration",
            genai.clone(),
            log.duration_us as f64 / 1e6,
        );
        if let Some(ttfb) = log.ttfb_us.filter(|_| log.stream) {
            self.add("weir.time_to_first_chunk", genai.clone(), ttfb as f64 / 1e6);
        }
        genai.retain(|(k, _)| *k != "error.type");
        let usage = log.usage.as_ref();
        for (kind, n) in [
            ("input", usage.and_then(|u| u.input_tokens)),
            ("output", usage.and_then(|u| u.output_tokens)),
        ] {
            if let Some(n) = n {
                let mut a = genai.clone();
                a.push(("gen_ai.token.type", kind.to_string()));
                self.add("gen_ai.client.token.usage", a, n as f64);
                self.add(
                    "weir.tokens",
                    vec![
                        ("gen_ai.request.model", model.clone()),
                        ("gen_ai.token.type", kind.to_string()),
                    ],
                    n as f64,
                );
            }
        }
        let status = match (extra.pricing_status, usage.is_some(), extra.cost_pusd) {
            ("", true, Some(_)) => "priced",
            ("", true, None) => "unpriced",
            ("", false, _) => "usage_missing",
            (settled, _, _) => settled,
        };
        // By model, so unpriced usage points at the model that needs a price (model keys are
        // configuration, a bounded set).
        self.add(
            "weir.usage_records",
            vec![
                ("gen_ai.request.model", model.clone()),
                ("weir.pricing_status", status.to_string()),
            ],
            1.0,
        );
        if let Some(c) = extra.cost_pusd {
            self.add(
                "weir.spend",
                vec![("gen_ai.request.model", model.clone())],
                c as f64 / 1e12,
            );
        }
        if let Some(n) = log.exposed_tool_count {
            self.add(
                "weir.tools.exposed",
                vec![("gen_ai.request.model", model.clone())],
                n as f64,
            );
        }
        if let Some(n) = log.invoked_tool_count {
            self.add(
                "weir.tools.invoked",
                vec![("gen_ai.request.model", model)],
                n as f64,
            );
        }
    }

    /// Every point as of `now_ns`, cumulative since the start.
    pub fn export(&self, resource: &[KeyValue], now_ns: u64) -> ExportMetricsServiceRequest {
        let mut metrics: Vec<Metric> = Vec::new();
        for (idx, def) in DEFS.iter().enumerate() {
            let points: Vec<(&Attrs, &Point)> = self
                .points
                .range((idx, Vec::new())..)
                .take_while(|((i, _), _)| *i == idx)
                .map(|((_, a), p)| (a, p))
                .collect();
            if points.is_empty() {
                continue;
            }
            let attrs = |a: &Attrs| -> Vec<KeyValue> {
                a.iter()
                    .map(|(k, v)| KeyValue {
                        key: k.to_string(),
                        value: Some(AnyValue {
                            value: Some(AnyValueKind::StringValue(v.clone())),
                        }),
                    })
                    .collect()
            };
            let cumulative = AggregationTemporality::Cumulative as i32;
            let data = match def.kind {
                Kind::Histogram(bounds) => Data::Histogram(Histogram {
                    aggregation_temporality: cumulative,
                    data_points: points
                        .iter()
                        .map(|(a, p)| HistogramDataPoint {
                            attributes: attrs(a),
                            start_time_unix_nano: self.start_ns,
                            time_unix_nano: now_ns,
                            count: p.count,
                            sum: Some(p.sum),
                            bucket_counts: p.buckets.clone(),
                            explicit_bounds: bounds.to_vec(),
                            ..Default::default()
                        })
                        .collect(),
                }),
                Kind::IntGauge => Data::Gauge(Gauge {
                    data_points: points
                        .iter()
                        .map(|(a, p)| NumberDataPoint {
                            attributes: attrs(a),
                            time_unix_nano: now_ns,
                            value: Some(number_data_point::Value::AsInt(p.sum as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
                Kind::IntSum | Kind::DoubleSum => Data::Sum(Sum {
                    aggregation_temporality: cumulative,
                    is_monotonic: true,
                    data_points: points
                        .iter()
                        .map(|(a, p)| NumberDataPoint {
                            attributes: attrs(a),
                            start_time_unix_nano: self.start_ns,
                            time_unix_nano: now_ns,
                            value: Some(match def.kind {
                                Kind::DoubleSum => number_data_point::Value::AsDouble(p.sum),
                                _ => number_data_point::Value::AsInt(p.sum as i64),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            };
            metrics.push(Metric {
                name: def.name.into(),
                unit: def.unit.into(),
                description: def.description.into(),
                data: Some(data),
                ..Default::default()
            });
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource.to_vec(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "weir".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics,
                    schema_url: SCHEMA_URL.into(),
                }],
                schema_url: SCHEMA_URL.into(),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::logs::{Attempt, Usage};

    fn log(outcome: &str, stream: bool, input: Option<u64>) -> RequestLog {
        RequestLog {
            operation: "chat_completions".into(),
            model_key: "gpt".into(),
            request_id: "unique-request-id".into(),
            status_code: if outcome == "success" { 200 } else { 502 },
            outcome: outcome.into(),
            stream,
            duration_us: 300_000,
            ttfb_us: Some(50_000),
            usage: input.map(|i| Usage {
                input_tokens: Some(i),
                output_tokens: Some(7),
                ..Default::default()
            }),
            attempts: vec![Attempt::default()],
            exposed_tool_count: Some(3),
            ..Default::default()
        }
    }

    fn metric<'a>(r: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        r.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn requests_aggregate_into_bounded_cumulative_points() {
        let mut m = Meter::new(1);
        let priced = Extra {
            provider: Some("anthropic"),
            cost_pusd: Some(500_000_000_000),
            pricing_status: "priced",
        };
        m.record(&log("success", true, Some(100)), priced);
        m.record(&log("success", false, Some(3_000)), priced);
        m.record(&log("upstream_error", false, None), Extra::default());
        let r = m.export(&[], 2);

        let Some(Data::Histogram(h)) = &metric(&r, "gen_ai.client.token.usage").data else {
            panic!("histogram")
        };
        let input = h
            .data_points
            .iter()
            .find(|p| {
                p.attributes.iter().any(|kv| {
                    kv.key == "gen_ai.token.type"
                        && kv.value
                            == Some(AnyValue {
                                value: Some(AnyValueKind::StringValue("input".into())),
                            })
                })
            })
            .unwrap();
        assert_eq!((input.count, input.sum), (2, Some(3_100.0)));
        assert_eq!(input.bucket_counts.iter().sum::<u64>(), 2);
        assert_eq!(input.bucket_counts[4], 1, "100 falls in (64, 256]");
        assert_eq!(input.bucket_counts[6], 1, "3000 falls in (1024, 4096]");

        let Some(Data::Histogram(d)) = &metric(&r, "gen_ai.client.operation.duration").data else {
            panic!("histogram")
        };
        assert_eq!(
            d.data_points.len(),
            2,
            "success and error.type=upstream_error"
        );
        let Some(Data::Histogram(t)) = &metric(&r, "weir.time_to_first_chunk").data else {
            panic!("histogram")
        };
        assert_eq!(t.data_points[0].count, 1, "streams only");
        let Some(Data::Sum(s)) = &metric(&r, "weir.spend").data else {
            panic!("sum")
        };
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(1.0))
        );
        let Some(Data::Sum(u)) = &metric(&r, "weir.usage_records").data else {
            panic!("sum")
        };
        assert_eq!(u.data_points.len(), 2, "priced and usage_missing");
        // Each point names the model, so unpriced usage points at what needs a price.
        for p in &u.data_points {
            let attrs: Vec<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(attrs, ["gen_ai.request.model", "weir.pricing_status"]);
        }
        let mut m2 = Meter::new(1);
        m2.record(
            &log("success", false, Some(10)),
            Extra {
                pricing_status: "estimated",
                ..priced
            },
        );
        let r2 = m2.export(&[], 2);
        let Some(Data::Sum(u2)) = &metric(&r2, "weir.usage_records").data else {
            panic!("sum")
        };
        assert!(
            format!("{:?}", u2.data_points[0].attributes).contains("estimated"),
            "the node's settled status is what is counted"
        );
        // No request ids, keys or users as attributes anywhere.
        let text = format!("{r:?}");
        assert!(!text.contains("unique-request-id"));
        for p in &d.data_points {
            assert!(p
                .attributes
                .iter()
                .all(|kv| kv.key != "weir.request_id" && kv.key != "user.id"));
        }
    }

    #[test]
    fn refusals_count_as_requests_but_not_as_genai_operations() {
        let mut m = Meter::new(0);
        let mut l = log("budget_error", false, None);
        l.attempts.clear();
        l.status_code = 429;
        m.record(&l, Extra::default());
        let r = m.export(&[], 1);
        let names: Vec<&str> = r.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["weir.requests", "weir.request.duration"]);
    }
}
