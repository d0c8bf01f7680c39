//! The live OTLP destinations of a node: the one its environment names and those the control
//! plane pushes (`TELEMETRY_SINKS`), rebuilt on the log worker whenever the pushed set changes,
//! so sinks come and go on a running node.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::KeyValue;

use crate::genai_metrics::Meter;
use crate::log_shipper::LogCounters;
use crate::otlp_export::{ExportCounters, ExportSettings, MetricsExporter, SpanExporter};
use crate::request_record::Built;
use crate::trace_context::ratio_keeps;

/// A pushed sink, compiled on the node (header values read from its environment).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The sink's name.
    pub name: String,
    /// Where and how.
    pub settings: ExportSettings,
    /// Whether metrics go there too.
    pub metrics: bool,
    /// Whether spans carry message content.
    pub capture_content: bool,
    /// Also the indexed legacy content attributes.
    pub legacy_attributes: bool,
    /// Server spans as new roots linked to the caller's span.
    pub new_root: bool,
    /// Resource attributes this sink adds (e.g. Phoenix's project).
    pub resource: Vec<(String, String)>,
}

/// How one sink wants its spans shaped; sinks with the same shape share one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Shape {
    content: bool,
    legacy: bool,
    new_root: bool,
}

struct LiveSink {
    ratio: f64,
    shape: Shape,
    spans: SpanExporter,
    metrics: Option<MetricsExporter>,
}

/// Every exporter of the node, owned by the log worker.
pub struct Telemetry {
    env: Option<LiveSink>,
    pushed: Vec<LiveSink>,
    pushed_from: Option<Arc<Vec<SinkConfig>>>,
    meter: Option<Meter>,
    resource: Vec<KeyValue>,
    tls: rustls::ClientConfig,
    counters: Arc<ExportCounters>,
    /// How often metrics go out.
    pub metrics_every: Duration,
}

impl Telemetry {
    /// Starts the environment's exporter, if any. Call on the runtime that will drive exports.
    pub fn new(
        env: Option<ExportSettings>,
        resource: Vec<KeyValue>,
        tls: rustls::ClientConfig,
        counters: Arc<ExportCounters>,
    ) -> Self {
        let metrics_every = env
            .as_ref()
            .map_or(Duration::from_secs(60), |e| e.metrics_interval);
        let mut t = Telemetry {
            env: None,
            pushed: Vec::new(),
            pushed_from: None,
            meter: None,
            resource,
            tls,
            counters,
            metrics_every,
        };
        t.env = env.map(|e| t.start(e, true, Shape::default(), &[]));
        t.ensure_meter();
        t
    }

    fn start(
        &self,
        settings: ExportSettings,
        metrics: bool,
        shape: Shape,
        extra_resource: &[(String, String)],
    ) -> LiveSink {
        let mut resource = self.resource.clone();
        resource.extend(extra_resource.iter().map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        v.clone(),
                    ),
                ),
            }),
        }));
        LiveSink {
            ratio: settings.sample_ratio,
            shape,
            metrics: metrics.then(|| {
                MetricsExporter::start(settings.clone(), self.tls.clone(), self.counters.clone())
            }),
            spans: SpanExporter::start(settings, resource, self.tls.clone(), self.counters.clone()),
        }
    }

    fn ensure_meter(&mut self) {
        let wanted = self.all().any(|s| s.metrics.is_some());
        if wanted && self.meter.is_none() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            self.meter = Some(Meter::new(now));
        }
    }

    fn all(&self) -> impl Iterator<Item = &LiveSink> {
        self.env.iter().chain(self.pushed.iter())
    }

    /// Follows the pushed set: when it changed, the old exporters flush and stop, new ones
    /// start.
    pub fn sync(&mut self, pushed: &Arc<Vec<SinkConfig>>) {
        if self
            .pushed_from
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, pushed))
        {
            return;
        }
        self.pushed = pushed
            .iter()
            .map(|s| {
                let shape = Shape {
                    content: s.capture_content,
                    legacy: s.legacy_attributes,
                    new_root: s.new_root,
                };
                self.start(s.settings.clone(), s.metrics, shape, &s.resource)
            })
            .collect();
        self.pushed_from = Some(pushed.clone());
        self.ensure_meter();
    }

    /// Exports one finished request: its spans to every sink whose ratio keeps its trace, and
    /// its numbers into the meter.
    pub fn record(&mut self, built: &Built) {
        if let Some(parts) = &built.trace {
            // One build per distinct shape among the sinks that keep this trace.
            let mut built_shapes: Vec<(Shape, Vec<opentelemetry_proto::tonic::trace::v1::Span>)> =
                Vec::new();
            let mut content = None;
            for sink in self.env.iter().chain(self.pushed.iter()) {
                if !ratio_keeps(&parts.ctx.trace_id, sink.ratio) {
                    continue;
                }
                let shape = sink.shape;
                let spans = match built_shapes.iter().position(|(s, _)| *s == shape) {
                    Some(i) => &built_shapes[i].1,
                    None => {
                        let mut spans = crate::genai_trace::spans(&built.log, parts);
                        if shape.new_root {
                            crate::genai_trace::make_new_root(&mut spans);
                        }
                        if shape.content {
                            let c = content.get_or_insert_with(|| {
                                crate::genai_content::from_payloads(
                                    &built.log.operation,
                                    &built.log.request_payload,
                                    &built.log.response_payload,
                                )
                            });
                            crate::genai_trace::add_content(&mut spans, c, shape.legacy);
                        }
                        built_shapes.push((shape, spans));
                        &built_shapes.last().expect("just pushed").1
                    }
                };
                sink.spans.push(spans.clone());
            }
        }
        if let Some(meter) = &mut self.meter {
            meter.record(&built.log, built.metrics);
        }
    }

    /// Sends the cumulative metrics, with the pipelines' own counters, to every metrics sink.
    pub fn export_metrics(
        &mut self,
        logs: &LogCounters,
        config: Option<&crate::config_stream::ConfigState>,
    ) {
        let Some(meter) = &mut self.meter else { return };
        if let Some(config) = config {
            meter.set_total(
                "weir.config.nacks",
                Vec::new(),
                config.nacks.load(Ordering::Relaxed),
            );
            meter.set_total(
                "weir.config.stream_connected",
                Vec::new(),
                config.connected.load(Ordering::Relaxed) as u64,
            );
            let snap = config.current.load();
            for t in crate::snapshot::SUBSCRIBED {
                // Versions are "<counter>" or "<counter>.<as-of>" (limits): the counter is what
                // moves with each change.
                let counter = snap
                    .version(t)
                    .split('.')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok());
                if let Some(v) = counter {
                    let name = t
                        .as_str_name()
                        .trim_start_matches("RESOURCE_TYPE_")
                        .to_ascii_lowercase();
                    meter.set_total("weir.config.version", vec![("weir.config.type", name)], v);
                }
            }
        }
        for (state, v) in [
            ("enqueued", &logs.enqueued),
            ("acked", &logs.acked),
            ("dropped_queue_full", &logs.dropped_queue_full),
            ("dropped_buffer_full", &logs.dropped_buffer_full),
            ("rejected", &logs.rejected),
        ] {
            meter.set_total(
                "weir.request_logs",
                vec![("weir.state", state.to_string())],
                v.load(Ordering::Relaxed),
            );
        }
        let c = &self.counters;
        for (state, v) in [
            ("exported", &c.exported),
            ("dropped_queue_full", &c.dropped_queue_full),
            ("export_failed", &c.failed),
        ] {
            meter.set_total(
                "weir.spans",
                vec![("weir.state", state.to_string())],
                v.load(Ordering::Relaxed),
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let snapshot = meter.export(&self.resource, now);
        for sink in self.env.iter().chain(self.pushed.iter()) {
            if let Some(m) = &sink.metrics {
                m.push(snapshot.clone());
            }
        }
    }
}
