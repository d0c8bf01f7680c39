//! An in-process OTLP receiver: the real `TraceService` over gRPC, keeping what it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// The endpoint a node exports to.
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
