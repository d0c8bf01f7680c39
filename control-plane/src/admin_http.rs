//! The admin API as HTTP JSON: each request is bound to its gRPC method's request message (routes
//! from `http_routes`), sent through the very `AdminServer` that serves gRPC, in process, and the
//! answer or status mapped back to JSON. One implementation, so the two cannot differ in
//! semantics, authorization included (ADR 0008).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prost::Message as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use tokio::net::TcpListener;
use tonic::{Code, Status};
use tower::ServiceExt;
use weir_proto::admin::admin_server::AdminServer;

use crate::admin::AdminService;
use crate::http_routes::{bind, BindError, Route, Routes};

/// Largest JSON body accepted.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Path of the served OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/admin/openapi.json";

/// What the HTTP side needs: the routes, the document and the gRPC service they call.
pub struct AdminHttp {
    routes: Routes,
    openapi: Bytes,
    grpc: AdminServer<AdminService>,
    pool: sqlx::PgPool,
}

impl AdminHttp {
    /// Serves `grpc` over HTTP JSON; `/readyz` checks `pool`.
    pub fn new(grpc: AdminServer<AdminService>, pool: sqlx::PgPool) -> Result<Self, String> {
        let routes = Routes::load()?;
        let openapi = Bytes::from(crate::openapi::document_text(&routes));
        Ok(AdminHttp {
            routes,
            openapi,
            grpc,
            pool,
        })
    }

    /// Ready when Postgres answers within 2 s: a replica without its database can serve no
    /// admin call, config change or log batch, so load balancers should skip it.
    async fn readyz(&self) -> Response<Full<Bytes>> {
        let check = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool);
        match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
            Ok(Ok(_)) => text(StatusCode::OK, "ready\n"),
            Ok(Err(_)) | Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
        }
    }

    /// Answers one HTTP request; never fails (errors are JSON bodies).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        match (req.method(), path.as_str()) {
            (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n"),
            (&Method::GET, "/readyz") => return self.readyz().await,
            (&Method::GET, OPENAPI_PATH) => {
                let mut r = Response::new(Full::new(self.openapi.clone()));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return r;
            }
            _ => {}
        }
        let (route, vars) = match self.routes.find(req.method().as_str(), &path) {
            Ok(found) => found,
            Err(e) => return bind_error(e),
        };
        let query = req.uri().query().unwrap_or("").to_string();
        let auth = req.headers().get(header::AUTHORIZATION).cloned();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "invalid_argument",
                    &format!("the request body is over {MAX_BODY} bytes"),
                )
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_argument",
                    &format!("reading the request body: {e}"),
                )
            }
        };
        let msg = match bind(route, &vars, &query, &body) {
            Ok(m) => m,
            Err(e) => return bind_error(e),
        };
        match self.call(route, msg, auth).await {
            Ok(answer) => json_response(StatusCode::OK, &answer),
            Err(status) => status_response(&status),
        }
    }

    /// Calls the gRPC method in process, through the same service (and checks) as the network.
    async fn call(
        &self,
        route: &Route,
        msg: DynamicMessage,
        auth: Option<HeaderValue>,
    ) -> Result<DynamicMessage, Status> {
        let encoded = msg.encode_to_vec();
        let mut frame = BytesMut::with_capacity(5 + encoded.len());
        frame.put_u8(0);
        frame.put_u32(encoded.len() as u32);
        frame.put_slice(&encoded);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(route.grpc_path())
            .header(header::CONTENT_TYPE, "application/grpc")
            .header(header::TE, "trailers");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req
            .body(Full::new(frame.freeze()))
            .map_err(|e| Status::internal(format!("building the call: {e}")))?;
        let Ok(resp) = self.grpc.clone().oneshot(req).await;
        let (parts, body) = resp.into_parts();
        if let Some(s) = Status::from_header_map(&parts.headers) {
            if s.code() != Code::Ok {
                return Err(s);
            }
        }
        let collected = body
            .collect()
            .await
            .map_err(|e| Status::internal(format!("reading the answer: {e}")))?;
        if let Some(s) = collected.trailers().and_then(Status::from_header_map) {
            if s.code() != Code::Ok {
                return Err(s);
            }
        }
        let data = collected.to_bytes();
        let payload = data
            .get(5..)
            .ok_or_else(|| Status::internal("the answer had no message"))?;
        DynamicMessage::decode(route.rpc.output(), payload)
            .map_err(|e| Status::internal(format!("decoding the answer: {e}")))
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    app: Arc<AdminHttp>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an admin HTTP connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => {
                        builder
                            .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "admin HTTP TLS handshake failed");
                        return;
                    }
                },
                None => {
                    builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin HTTP connection ended with an error");
            }
        });
    }
}

/// A TLS acceptor from PEM files.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Binds the listener, reporting the address it got.
pub async fn bind_listener(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr).await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

fn json_response(status: StatusCode, msg: &DynamicMessage) -> Response<Full<Bytes>> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut out);
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    if let Err(e) = msg.serialize_with_options(&mut ser, &opts) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("encoding the answer: {e}"),
        );
    }
    out.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(out)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn bind_error(e: BindError) -> Response<Full<Bytes>> {
    let message = e.to_string();
    match e {
        BindError::NotFound { .. } => error(StatusCode::NOT_FOUND, "not_found", &message),
        BindError::MethodNotAllowed { allowed, .. } => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &message,
            );
            if let Ok(v) = HeaderValue::from_str(&allowed) {
                r.headers_mut().insert(header::ALLOW, v);
            }
            r
        }
        BindError::Invalid(_) => error(StatusCode::BAD_REQUEST, "invalid_argument", &message),
    }
}

/// The HTTP status and snake-case name of a gRPC status code.
pub fn http_status(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::Ok => (StatusCode::OK, "ok"),
        Code::Cancelled => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "cancelled",
        ),
        Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "failed_precondition"),
        Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        Code::OutOfRange => (StatusCode::BAD_REQUEST, "out_of_range"),
        Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
    }
}

fn status_response(s: &Status) -> Response<Full<Bytes>> {
    let (status, code) = http_status(s.code());
    let mut r = error(status, code, s.message());
    if s.code() == Code::Unauthenticated {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "error": {"code": code, "message": message, "status": status.as_u16()}
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        let cases = [
            (Code::NotFound, 404, "not_found"),
            (Code::InvalidArgument, 400, "invalid_argument"),
            (Code::Unauthenticated, 401, "unauthenticated"),
            (Code::PermissionDenied, 403, "permission_denied"),
            (Code::AlreadyExists, 409, "already_exists"),
            (Code::FailedPrecondition, 400, "failed_precondition"),
            (Code::Unavailable, 503, "unavailable"),
            (Code::Internal, 500, "internal"),
        ];
        for (code, http, name) in cases {
            assert_eq!(
                http_status(code),
                (StatusCode::from_u16(http).unwrap(), name)
            );
        }
    }
}
