//! Every error a client of the data plane can see, mapped once to OpenAI's error JSON:
//! `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::{full, Body};

/// An error answered to the client by the gateway itself (upstream errors pass through as sent).
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("You didn't provide an API key. Send it as `Authorization: Bearer <key>`.")]
    MissingKey,
    #[error("Incorrect API key provided: {0}.")]
    InvalidKey(String),
    #[error("The API key has expired.")]
    ExpiredKey,
    #[error("This API key may not use the model `{0}`.")]
    ModelNotAllowed(String),
    #[error("The model `{0}` does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("Request body is larger than the {0}-byte limit.")]
    BodyTooLarge(usize),
    #[error("We could not parse the JSON body of your request: {0}.")]
    InvalidJson(String),
    #[error("Missing required parameter: '{0}'.")]
    MissingParameter(&'static str),
    #[error("The model `{0}` does not support {1}.")]
    UnsupportedOperation(String, &'static str),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("Invalid type for '{0}': {1}.")]
    InvalidParameter(&'static str, String),
    #[error("Invalid header {0}: {1}.")]
    InvalidHeader(&'static str, &'static str),
    #[error("Invalid header {0}: {1}")]
    InvalidHeaderValue(&'static str, String),
    #[error("Unknown request URL: {0} {1}.")]
    UnknownUrl(String, String),
    #[error("Rate limit reached for this {0}: {1} {2} per minute. Retry after a moment.")]
    RateLimited(&'static str, u64, &'static str),
    #[error("The {0}'s spend budget for this period is used up.")]
    BudgetExceeded(&'static str),
    #[error("The model `{0}` has no price, and its route refuses unpriced requests.")]
    ModelNotPriced(String),
    #[error("The gateway has not received its configuration yet; retry shortly.")]
    NotReady,
    #[error("Provider `{0}` is not available on this gateway node.")]
    ProviderMissing(String),
    #[error("The upstream provider could not be reached: {0}.")]
    UpstreamUnavailable(String),
    #[error("The upstream provider did not answer in time.")]
    UpstreamTimeout,
    #[error("The gateway failed to handle the request: {0}.")]
    Internal(String),
}

impl GatewayError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            MissingKey | InvalidKey(_) | ExpiredKey => StatusCode::UNAUTHORIZED,
            ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            ModelNotFound(_) | UnknownUrl(..) => StatusCode::NOT_FOUND,
            UnsupportedOperation(..) | InvalidRequest(_) | ModelNotPriced(_) => {
                StatusCode::BAD_REQUEST
            }
            BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidJson(_)
            | MissingParameter(_)
            | InvalidParameter(..)
            | InvalidHeader(..)
            | InvalidHeaderValue(..) => StatusCode::BAD_REQUEST,
            RateLimited(..) | BudgetExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ProviderMissing(_) | UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingKey | InvalidKey(_) | ExpiredKey => "invalid_request_error",
            ModelNotAllowed(_) => "permission_error",
            RateLimited(_, _, unit) => {
                if *unit == "tokens" {
                    "tokens"
                } else {
                    "requests"
                }
            }
            BudgetExceeded(_) => "insufficient_quota",
            ModelNotFound(_)
            | BodyTooLarge(_)
            | InvalidJson(_)
            | MissingParameter(_)
            | InvalidParameter(..)
            | InvalidHeader(..)
            | InvalidHeaderValue(..)
            | UnknownUrl(..)
            | UnsupportedOperation(..)
            | ModelNotPriced(_)
            | InvalidRequest(_) => "invalid_request_error",
            NotReady
            | ProviderMissing(_)
            | UpstreamUnavailable(_)
            | UpstreamTimeout
            | Internal(_) => "api_error",
        }
    }

    /// A stable `error.code`.
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingKey => "missing_api_key",
            InvalidKey(_) => "invalid_api_key",
            ExpiredKey => "expired_api_key",
            RateLimited(..) => "rate_limit_exceeded",
            BudgetExceeded(_) => "budget_exceeded",
            ModelNotAllowed(_) => "model_not_allowed",
            ModelNotFound(_) => "model_not_found",
            ModelNotPriced(_) => "model_not_priced",
            BodyTooLarge(_) => "request_too_large",
            InvalidJson(_) => "invalid_json",
            MissingParameter(_) => "missing_required_parameter",
            UnsupportedOperation(..) => "unsupported_operation",
            InvalidRequest(_) => "invalid_request",
            InvalidParameter(..) => "invalid_type",
            InvalidHeader(..) | InvalidHeaderValue(..) => "invalid_header",
            UnknownUrl(..) => "unknown_url",
            NotReady => "config_not_loaded",
            ProviderMissing(_) => "provider_missing",
            UpstreamUnavailable(_) => "upstream_unavailable",
            UpstreamTimeout => "upstream_timeout",
            Internal(_) => "internal_error",
        }
    }

    /// The request-log outcome this error records.
    pub fn outcome(&self) -> &'static str {
        use GatewayError::*;
        match self {
            MissingKey | InvalidKey(_) | ExpiredKey | ModelNotAllowed(_) => "auth_error",
            RateLimited(..) => "rate_limited",
            BudgetExceeded(_) => "budget_error",
            ModelNotFound(_)
            | BodyTooLarge(_)
            | InvalidJson(_)
            | MissingParameter(_)
            | InvalidParameter(..)
            | InvalidHeader(..)
            | InvalidHeaderValue(..)
            | UnknownUrl(..)
            | UnsupportedOperation(..)
            | ModelNotPriced(_)
            | InvalidRequest(_) => "invalid_request",
            ProviderMissing(_) | UpstreamUnavailable(_) | UpstreamTimeout => "upstream_error",
            NotReady | Internal(_) => "internal_error",
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::MissingParameter(p) | GatewayError::InvalidParameter(p, _) => Some(p),
            GatewayError::ModelNotFound(_) | GatewayError::ModelNotAllowed(_) => Some("model"),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": self.param(),
                "code": self.code(),
            }
        });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// The JSON body as the Anthropic Messages API shapes errors.
    pub fn anthropic_body(&self) -> Bytes {
        let v = serde_json::json!({
            "type": "error",
            "error": {"type": anthropic_error_type(self.status()), "message": self.to_string()},
        });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// The whole response in the shape the client's API uses, echoing the request id.
    pub fn response_for(&self, request_id: &str, anthropic: bool) -> Response<Body> {
        if !anthropic {
            return self.response(request_id);
        }
        let mut resp = self.response(request_id);
        *resp.body_mut() = full(self.anthropic_body());
        resp
    }

    /// The whole response, echoing the request id.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        let mut resp = Response::new(full(self.body()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-request-id", v);
        }
        resp
    }
}

/// Anthropic's `error.type` for an HTTP status.
pub fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape() {
        let cases = [
            (GatewayError::MissingKey, 401, "missing_api_key"),
            (
                GatewayError::InvalidKey("weir_sk_ab…".into()),
                401,
                "invalid_api_key",
            ),
            (
                GatewayError::ModelNotFound("x".into()),
                404,
                "model_not_found",
            ),
            (GatewayError::BodyTooLarge(10), 413, "request_too_large"),
            (GatewayError::InvalidJson("EOF".into()), 400, "invalid_json"),
            (GatewayError::UpstreamTimeout, 504, "upstream_timeout"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(v["error"]["code"], code);
            assert!(v["error"]["message"].as_str().unwrap().len() > 5);
            assert!(v["error"]["type"].is_string());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::MissingParameter("model").body()).unwrap();
        assert_eq!(v["error"]["param"], "model");
        let v: serde_json::Value =
            serde_json::from_slice(&GatewayError::MissingKey.anthropic_body()).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(
            anthropic_error_type(StatusCode::NOT_FOUND),
            "not_found_error"
        );
        assert_eq!(
            anthropic_error_type(StatusCode::BAD_REQUEST),
            "invalid_request_error"
        );
    }
}
