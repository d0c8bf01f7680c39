//! Span export over OTLP (gRPC, or HTTP with protobuf bodies), batched in the background.
//!
//! The log worker hands over each request's spans without waiting; a bounded channel sits in
//! between, and whatever does not fit is counted and dropped. A few batches are in flight at
//! once, each with a timeout, so a collector that is down, slow or refusing costs spans, never a request's
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::mpsc;

use crate::genai_trace;

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
    /// `http/protobuf`: `POST …/v1/traces`, `application/x-protobuf`.
    HttpProtobuf,
}

/// Why the export settings are unusable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExportSettingsError {
    #[error("{name}={value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{0} names environment variable {1}, which is not set")]
    MissingHeaderEnv(String, String),
}

/// Where and how spans go.
#[derive(Clone)]
pub struct ExportSettings {
    /// For gRPC the collector's base URL; for HTTP the full traces URL.
    pub endpoint: String,
    /// Transport.
    pub protocol: Protocol,
    /// Headers sent with every export (values may be secrets: never printed).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Share of traces exported, 0 to 1 (callers' unsampled traces never are).
    pub sample_ratio: f64,
    /// `service.name` of the node's resource.
    pub service_name: String,
    /// Longest one export may take.
    pub timeout: Duration,
    /// Where metrics go: for gRPC the same base URL, for HTTP the full metrics URL.
    pub metrics_endpoint: String,
    /// How often metrics are exported.
    pub metrics_interval: Duration,
}

impl std::fmt::Debug for ExportSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSettings")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("sample_ratio", &self.sample_ratio)
            .finish()
    }
}

impl ExportSettings {
    /// Reads `WEIR_OTEL_*` and the standard `OTEL_*` variables; `None` when no endpoint is set.
    ///
    /// - endpoint: `WEIR_OTEL_ENDPOINT`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is),
    ///   else `OTEL_EXPORTER_OTLP_ENDPOINT` (HTTP gets `/v1/traces` appended);
    /// - protocol: `WEIR_OTEL_PROTOCOL`, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`,
    ///   `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`;
    /// - headers: `WEIR_OTEL_HEADERS_FROM_ENV=header=ENV_VAR,…` (the value is read from the
    ///   named variable, so secrets stay out of the node's own settings), plus
    ///   `OTEL_EXPORTER_OTLP_HEADERS=key=value,…` (values URL-decoded);
    /// - sampling: `WEIR_OTEL_SAMPLE_RATIO`, else `OTEL_TRACES_SAMPLER_ARG`, default 1;
    /// - `OTEL_SERVICE_NAME`, default `weir-data-plane`.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ExportSettings>, ExportSettingsError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let protocol_raw = get("WEIR_OTEL_PROTOCOL")
            .or_else(|| get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"))
            .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol_raw.as_deref().map(str::trim) {
            None | Some("grpc") => Protocol::Grpc,
            Some("http/protobuf") => Protocol::HttpProtobuf,
            Some(other) => {
                return Err(ExportSettingsError::Invalid {
                    name: "WEIR_OTEL_PROTOCOL",
                    value: other.to_string(),
                    reason: "expected grpc or http/protobuf (http/json is not supported)",
                })
            }
        };
        let endpoint = if let Some(e) = get("WEIR_OTEL_ENDPOINT") {
            e
        } else if let Some(e) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            e
        } else if let Some(e) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            match protocol {
                Protocol::Grpc => e,
                Protocol::HttpProtobuf => format!("{}/v1/traces", e.trim_end_matches('/')),
            }
        } else {
            return Ok(None);
        };
        let endpoint = endpoint.trim().to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            || endpoint.parse::<http::Uri>().is_err()
        {
            return Err(ExportSettingsError::Invalid {
                name: "WEIR_OTEL_ENDPOINT",
                value: endpoint,
                reason: "expected an absolute http(s) URL",
            });
        }
        let mut headers = Vec::new();
        if let Some(spec) = get("WEIR_OTEL_HEADERS_FROM_ENV") {
            for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, var) = pair.split_once('=').ok_or(ExportSettingsError::Invalid {
                    name: "WEIR_OTEL_HEADERS_FROM_ENV",
                    value: pair.to_string(),
                    reason: "expected header=ENV_VAR",
                })?;
                let value = get(var.trim()).ok_or_else(|| {
                    ExportSettingsError::MissingHeaderEnv(name.to_string(), var.to_string())
                })?;
                headers.push(header("WEIR_OTEL_HEADERS_FROM_ENV", name, &value)?);
            }
        }
        if let Some(spec) = get("OTEL_EXPORTER_OTLP_HEADERS") {
            for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, value) = pair.split_once('=').ok_or(ExportSettingsError::Invalid {
                    name: "OTEL_EXPORTER_OTLP_HEADERS",
                    value: "(hidden)".into(),
                    reason: "expected key=value,…",
                })?;
                headers.push(header(
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    name,
                    &percent_decode(value.trim()),
                )?);
            }
        }
        let ratio_raw = get("WEIR_OTEL_SAMPLE_RATIO").or_else(|| get("OTEL_TRACES_SAMPLER_ARG"));
        let sample_ratio = match ratio_raw {
            None => 1.0,
            Some(r) => match r.trim().parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => x,
                _ => {
                    return Err(ExportSettingsError::Invalid {
                        name: "WEIR_OTEL_SAMPLE_RATIO",
                        value: r,
                        reason: "expected a number from 0 to 1",
                    })
                }
            },
        };
        let metrics_endpoint = match (
            get("WEIR_OTEL_METRICS_ENDPOINT")
                .or_else(|| get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")),
            protocol,
        ) {
            (Some(e), _) => e.trim().to_string(),
            (None, p) => metrics_endpoint_for(&endpoint, p),
        };
        let metrics_interval = match (
            get("WEIR_OTEL_EXPORT_INTERVAL_SECS"),
            get("OTEL_METRIC_EXPORT_INTERVAL"),
        ) {
            (Some(s), _) => match s.trim().parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_secs(n),
                _ => {
                    return Err(ExportSettingsError::Invalid {
                        name: "WEIR_OTEL_EXPORT_INTERVAL_SECS",
                        value: s,
                        reason: "expected whole seconds above 0",
                    })
                }
            },
            (None, Some(ms)) => match ms.trim().parse::<u64>() {
                Ok(n) if n > 0 => Duration::from_millis(n),
                _ => {
                    return Err(ExportSettingsError::Invalid {
                        name: "OTEL_METRIC_EXPORT_INTERVAL",
                        value: ms,
                        reason: "expected milliseconds above 0",
                    })
                }
            },
            (None, None) => Duration::from_secs(60),
        };
        Ok(Some(ExportSettings {
            metrics_endpoint,
            metrics_interval,
            endpoint,
            protocol,
            headers,
            sample_ratio,
            service_name: get("OTEL_SERVICE_NAME").unwrap_or_else(|| "weir-data-plane".into()),
            timeout: Duration::from_secs(10),
        }))
    }
}

/// The metrics endpoint beside a traces endpoint: the same gRPC base, or for HTTP the traces
/// URL with `/v1/metrics` in place of `/v1/traces`.
pub fn metrics_endpoint_for(traces_endpoint: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => traces_endpoint.to_string(),
        Protocol::HttpProtobuf => match traces_endpoint.strip_suffix("/v1/traces") {
            Some(base) => format!("{base}/v1/metrics"),
            None => format!("{}/v1/metrics", traces_endpoint.trim_end_matches('/')),
        },
    }
}

fn header(
    setting: &'static str,
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), ExportSettingsError> {
    let n = HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes()).map_err(|_| {
        ExportSettingsError::Invalid {
            name: setting,
            value: name.to_string(),
            reason: "not a header name",
        }
    })?;
    let mut v = HeaderValue::from_str(value).map_err(|_| ExportSettingsError::Invalid {
        name: setting,
        value: name.to_string(),
        reason: "the header's value is not a valid header value",
    })?;
    v.set_sensitive(true);
    Ok((n, v))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counters of the span pipeline, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Spans accepted for export.
    pub queued: AtomicU64,
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Spans lost to failed exports (collector down, refusing or too slow).
    pub failed: AtomicU64,
    /// Metric snapshots the collector accepted.
    pub metric_exports: AtomicU64,
    /// Metric snapshots that failed (the next one carries the same cumulative points).
    pub metric_exports_failed: AtomicU64,
}

/// Spans per export request.
const BATCH_SPANS: usize = 2048;
/// Export requests in flight at once (multiplexed on one gRPC connection, or pooled HTTP).
const IN_FLIGHT: usize = 4;
/// Longest a partial batch waits.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Requests' span groups waiting for export.
const QUEUE_REQUESTS: usize = 8192;

/// The worker's handle.
pub struct SpanExporter {
    tx: mpsc::Sender<Vec<Span>>,
    counters: Arc<ExportCounters>,
}

impl SpanExporter {
    /// Starts the export task on the current runtime.
    pub fn start(
        settings: ExportSettings,
        resource: Vec<KeyValue>,
        tls: rustls::ClientConfig,
        counters: Arc<ExportCounters>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        tokio::spawn(run(settings, resource, tls, counters.clone(), rx));
        SpanExporter { tx, counters }
    }

    /// Hands one request's spans over, or counts them as dropped.
    pub fn push(&self, spans: Vec<Span>) {
        let n = spans.len() as u64;
        match self.tx.try_send(spans) {
            Ok(()) => self.counters.queued.fetch_add(n, Ordering::Relaxed),
            Err(_) => self
                .counters
                .dropped_queue_full
                .fetch_add(n, Ordering::Relaxed),
        };
    }
}

/// The worker's handle on metrics export: at most one snapshot waits while one is sent.
pub struct MetricsExporter {
    tx: mpsc::Sender<ExportMetricsServiceRequest>,
}

impl MetricsExporter {
    /// Starts the metrics export task on the current runtime.
    pub fn start(
        settings: ExportSettings,
        tls: rustls::ClientConfig,
        counters: Arc<ExportCounters>,
    ) -> Self {
        let (tx, mut rx) = mpsc::channel::<ExportMetricsServiceRequest>(1);
        tokio::spawn(async move {
            let Some(mut transport) = transport(&settings, tls) else {
                return;
            };
            while let Some(req) = rx.recv().await {
                match send_metrics(&mut transport, &settings, req).await {
                    Ok(()) => counters.metric_exports.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!(error = %e, "OTLP metrics export failed");
                        counters
                            .metric_exports_failed
                            .fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        MetricsExporter { tx }
    }

    /// Hands a snapshot over; when one is still waiting this one is skipped (points are
    /// cumulative: the next snapshot carries everything).
    pub fn push(&self, req: ExportMetricsServiceRequest) {
        let _ = self.tx.try_send(req);
    }
}

#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // one per exporter task, cloned per batch: size is irrelevant
enum Transport {
    Grpc(tonic::transport::Channel),
    Http(
        hyper_util::client::legacy::Client<
            hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
            Full<Bytes>,
        >,
    ),
}

/// The connection to the collector: one lazily connected gRPC channel, or a pooled HTTP client.
fn transport(settings: &ExportSettings, tls: rustls::ClientConfig) -> Option<Transport> {
    Some(match settings.protocol {
        Protocol::Grpc => {
            let mut ep = match tonic::transport::Endpoint::from_shared(settings.endpoint.clone()) {
                Ok(ep) => ep,
                Err(e) => {
                    tracing::error!(error = %e, "OTLP endpoint unusable; nothing is exported");
                    return None;
                }
            };
            ep = ep
                .connect_timeout(Duration::from_secs(3))
                .timeout(settings.timeout)
                .tcp_nodelay(true);
            if settings.endpoint.starts_with("https://") {
                match weir_proto::grpc_tls::client_config(None).map(|t| ep.clone().tls_config(t)) {
                    Ok(Ok(with_tls)) => ep = with_tls,
                    _ => {
                        tracing::error!("OTLP endpoint TLS setup failed; nothing is exported");
                        return None;
                    }
                }
            }
            Transport::Grpc(ep.connect_lazy())
        }
        Protocol::HttpProtobuf => {
            Transport::Http(crate::upstream::client(Duration::from_secs(3), tls))
        }
    })
}

async fn run(
    settings: ExportSettings,
    resource: Vec<KeyValue>,
    tls: rustls::ClientConfig,
    counters: Arc<ExportCounters>,
    mut rx: mpsc::Receiver<Vec<Span>>,
) {
    let Some(transport) = transport(&settings, tls) else {
        return;
    };
    let settings = Arc::new(settings);
    let resource = Arc::new(resource);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut batch: Vec<Span> = Vec::new();
    let last_warning = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    loop {
        // Wait for the first spans of a batch, then fill it for at most BATCH_DELAY.
        let first = tokio::select! {
            first = rx.recv() => first,
            // Reap finished exports while idle.
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => continue,
        };
        match first {
            Some(s) => batch.extend(s),
            None => break,
        }
        let until = tokio::time::Instant::now() + BATCH_DELAY;
        let mut closed = false;
        while batch.len() < BATCH_SPANS {
            tokio::select! {
                more = rx.recv() => match more {
                    Some(s) => batch.extend(s),
                    None => { closed = true; break; }
                },
                _ = tokio::time::sleep_until(until) => break,
            }
        }
        // At most IN_FLIGHT exports at once; while they are all busy, the channel fills and
        // the worker's pushes start counting drops.
        while in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await;
        }
        let spans = std::mem::take(&mut batch);
        let (mut transport, settings, resource, counters, last_warning) = (
            transport.clone(),
            settings.clone(),
            resource.clone(),
            counters.clone(),
            last_warning.clone(),
        );
        in_flight.spawn(async move {
            let n = spans.len() as u64;
            let req = ExportTraceServiceRequest {
                resource_spans: vec![genai_trace::resource_spans(&resource, spans)],
            };
            match send(&mut transport, &settings, req).await {
                Ok(()) => {
                    counters.exported.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(n, Ordering::Relaxed);
                    // One warning a minute at most: a down collector must not flood the log.
                    let now = tokio::time::Instant::now();
                    let mut last = last_warning.lock().unwrap_or_else(|e| e.into_inner());
                    if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(60)) {
                        *last = Some(now);
                        tracing::warn!(error = %e, spans = n, "OTLP export failed; spans dropped");
                    }
                }
            }
        });
        if closed {
            break;
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// A gRPC request carrying the configured headers and timeout.
fn grpc_request<T>(settings: &ExportSettings, body: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    r.set_timeout(settings.timeout);
    for (n, v) in &settings.headers {
        if let (Ok(n), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(n.as_str().as_bytes()),
            tonic::metadata::MetadataValue::try_from(v.as_bytes()),
        ) {
            r.metadata_mut().insert(n, v);
        }
    }
    r
}

async fn send(
    transport: &mut Transport,
    settings: &ExportSettings,
    req: ExportTraceServiceRequest,
) -> Result<(), String> {
    match transport {
        Transport::Grpc(channel) => TraceServiceClient::new(channel.clone())
            .export(grpc_request(settings, req))
            .await
            .map(|_| ())
            .map_err(|s| format!("{}: {}", s.code(), s.message())),
        Transport::Http(_) => {
            let body = req.encode_to_vec();
            post(transport, settings, &settings.endpoint, body).await
        }
    }
}

async fn send_metrics(
    transport: &mut Transport,
    settings: &ExportSettings,
    req: ExportMetricsServiceRequest,
) -> Result<(), String> {
    match transport {
        Transport::Grpc(channel) => MetricsServiceClient::new(channel.clone())
            .export(grpc_request(settings, req))
            .await
            .map(|_| ())
            .map_err(|s| format!("{}: {}", s.code(), s.message())),
        Transport::Http(_) => {
            let body = req.encode_to_vec();
            post(transport, settings, &settings.metrics_endpoint, body).await
        }
    }
}

async fn post(
    transport: &mut Transport,
    settings: &ExportSettings,
    url: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    match transport {
        Transport::Grpc(_) => Err("not an HTTP transport".into()),
        Transport::Http(client) => {
            let mut b = http::Request::post(url)
                .header(http::header::CONTENT_TYPE, "application/x-protobuf");
            for (n, v) in &settings.headers {
                b = b.header(n, v);
            }
            let r = b
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(settings.timeout, client.request(r))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let status = resp.status();
            // Drain the body so the connection can be reused.
            let _ = tokio::time::timeout(settings.timeout, resp.into_body().collect()).await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn no_endpoint_no_export() {
        assert!(ExportSettings::from_env(env(&[])).unwrap().is_none());
    }

    #[test]
    fn standard_otel_variables_work() {
        let s = ExportSettings::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=a%3Db,other=c"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
            ("OTEL_SERVICE_NAME", "gw"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(s.metrics_endpoint, "http://collector:4318/v1/metrics");
        assert_eq!(s.metrics_interval, Duration::from_secs(60));
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.headers[0].0, "x-api-key");
        assert_eq!(s.headers[0].1, "a=b");
        assert_eq!(s.headers.len(), 2);
        assert_eq!(s.sample_ratio, 0.5);
        assert_eq!(s.service_name, "gw");
        // A traces-specific endpoint is used as is; gRPC is the default.
        let s = ExportSettings::from_env(env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol),
            ("http://c:4317", Protocol::Grpc)
        );
        assert_eq!(s.metrics_endpoint, "http://c:4317");
    }

    #[test]
    fn header_secrets_come_from_named_variables_and_never_print() {
        let s = ExportSettings::from_env(env(&[
            ("WEIR_OTEL_ENDPOINT", "https://otlp.example.com"),
            ("WEIR_OTEL_HEADERS_FROM_ENV", "authorization=OTLP_AUTH"),
            ("OTLP_AUTH", "Bearer s3cret"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(s.headers[0].1, "Bearer s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
        let missing = ExportSettings::from_env(env(&[
            ("WEIR_OTEL_ENDPOINT", "https://otlp.example.com"),
            ("WEIR_OTEL_HEADERS_FROM_ENV", "authorization=NOPE"),
        ]));
        assert_eq!(
            missing.err().unwrap(),
            ExportSettingsError::MissingHeaderEnv("authorization".into(), "NOPE".into())
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (pairs, name) in [
            (
                vec![("WEIR_OTEL_ENDPOINT", "collector:4317")],
                "WEIR_OTEL_ENDPOINT",
            ),
            (
                vec![
                    ("WEIR_OTEL_ENDPOINT", "http://c"),
                    ("WEIR_OTEL_PROTOCOL", "http/json"),
                ],
                "WEIR_OTEL_PROTOCOL",
            ),
            (
                vec![
                    ("WEIR_OTEL_ENDPOINT", "http://c"),
                    ("WEIR_OTEL_SAMPLE_RATIO", "2"),
                ],
                "WEIR_OTEL_SAMPLE_RATIO",
            ),
            (
                vec![
                    ("WEIR_OTEL_ENDPOINT", "http://c"),
                    ("WEIR_OTEL_HEADERS_FROM_ENV", "novar"),
                ],
                "WEIR_OTEL_HEADERS_FROM_ENV",
            ),
        ] {
            let err = ExportSettings::from_env(env(&pairs)).err().unwrap();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }
}
