//! An in-process OTLP receiver: the real `TraceService` over gRPC, keeping what it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
use tokio_stream::wrappers::TcpListenerStream;

/// What the receiver got.
#[derive(Debug, Default)]
pub struct Received {
    /// Every export request's resource spans, in arrival order.
    pub batches: Mutex<Vec<ResourceSpans>>,
    /// The `authorization` metadata of each export.
    pub authorizations: Mutex<Vec<String>>,
    /// The latest metrics export (points are cumulative).
    pub metrics: Mutex<Option<ExportMetricsServiceRequest>>,
    /// Path and headers of every HTTP export.
    pub http_requests: Mutex<Vec<(String, http::HeaderMap)>>,
}

impl Received {
    /// Every span received so far, with its resource's attributes.
    pub fn spans(&self) -> Vec<(Vec<KeyValue>, Span)> {
        let batches = self.batches.lock().expect("lock");
        let mut out = Vec::new();
        for rs in batches.iter() {
            let resource = rs
                .resource
                .clone()
                .map(|r| r.attributes)
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    out.push((resource.clone(), s.clone()));
                }
            }
        }
        out
    }
}

struct Service(Arc<Received>);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        *self.0.metrics.lock().expect("lock") = Some(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        self.0.authorizations.lock().expect("lock").push(auth);
        self.0
            .batches
            .lock()
            .expect("lock")
            .extend(req.into_inner().resource_spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running receiver.
pub struct OtlpReceiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it got.
    pub received: Arc<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts on a free loopback port.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Received::default());
        let svc = TraceServiceServer::new(Service(received.clone()));
        let metrics = MetricsServiceServer::new(Service(received.clone()));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(metrics)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// Starts an OTLP/HTTP receiver (`POST /v1/traces`, protobuf bodies) on a free port.
    pub async fn start_http() -> OtlpReceiver {
        use http_body_util::{BodyExt, Full};
        use prost::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Received::default());
        let rec = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let rec = rec.clone();
                            async move {
                                let ok = req.uri().path().ends_with("/v1/traces")
                                    && req
                                        .headers()
                                        .get("content-type")
                                        .is_some_and(|v| v == "application/x-protobuf");
                                rec.http_requests
                                    .lock()
                                    .expect("lock")
                                    .push((req.uri().path().to_string(), req.headers().clone()));
                                let auth = req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or_default()
                                    .to_string();
                                let body = req.into_body().collect().await.map(|c| c.to_bytes());
                                let status = match (
                                    ok,
                                    body.ok()
                                        .and_then(|b| ExportTraceServiceRequest::decode(b).ok()),
                                ) {
                                    (true, Some(export)) => {
                                        rec.authorizations.lock().expect("lock").push(auth);
                                        rec.batches
                                            .lock()
                                            .expect("lock")
                                            .extend(export.resource_spans);
                                        200
                                    }
                                    _ => 400,
                                };
                                let resp = http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(bytes::Bytes::from(
                                        ExportTraceServiceResponse::default().encode_to_vec(),
                                    )))
                                    .expect("response");
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
                });
            }
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// The endpoint a node exports to (gRPC; add `/v1/traces` for HTTP).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of attribute `key`, as a JSON value (strings, numbers, booleans, arrays).
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<serde_json::Value> {
    let v = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(any_to_json(v))
}

fn any_to_json(v: &AnyValueKind) -> serde_json::Value {
    match v {
        AnyValueKind::StringValue(s) => s.clone().into(),
        AnyValueKind::IntValue(i) => (*i).into(),
        AnyValueKind::DoubleValue(d) => (*d).into(),
        AnyValueKind::BoolValue(b) => (*b).into(),
        AnyValueKind::ArrayValue(a) => a
            .values
            .iter()
            .filter_map(|x| x.value.as_ref().map(any_to_json))
            .collect(),
        _ => serde_json::Value::Null,
    }
}
