//! The HTTP plumbing, one of each for every route (the API, the admin
//! page, `POST /sse/command`, health and metrics) and for the transports'
//! refusals: the response body type, plain and JSON responses, the body
//! reader with its size limit, the JSON parser, and the one table from the
//! protocol's error codes to HTTP statuses.

use crate::refusal::Refusal;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::time::Duration;
use switchyard_core::codes::ErrorCode;
use switchyard_core::metric;

/// The body of every response: whole (`Full`) or streamed (SSE).
pub type Body = BoxBody<Bytes, Infallible>;

/// The HTTP status that answers an error of the protocol.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::UnknownCommand => StatusCode::NOT_FOUND,
        ErrorCode::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::NotAvailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// A bounded metric label for the statuses the routes answer with.
pub fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        410 => "410",
        413 => "413",
        429 => "429",
        503 => "503",
        _ => "500",
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}

/// A JSON response of `body`, already serialized.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = text(status, body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON response.
pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    json_bytes(status, Bytes::from(body.to_string()))
}

/// `{"error": {"code", "message"}}`.
pub fn error_body(refusal: &Refusal) -> Value {
    json!({"error": {"code": refusal.code.code(), "message": refusal.message}})
}

/// A refusal as its JSON error, with the status of the table.
pub fn refused(refusal: &Refusal) -> Response<Body> {
    refused_with(status_of(refusal.code), refusal)
}

/// A refusal as its JSON error, with a status of its own (where the table's
/// would say less: 410 for a stream that is gone, say).
pub fn refused_with(status: StatusCode, refusal: &Refusal) -> Response<Body> {
    json(status, &error_body(refusal))
}

/// `{"result": ...}` with 200, or the refusal.
pub fn answer(result: &Result<Value, Refusal>) -> Response<Body> {
    match result {
        Ok(value) => json(StatusCode::OK, &json!({ "result": value })),
        Err(refusal) => refused(refusal),
    }
}

/// A request's body, at most `limit` bytes (a longer one is refused with
/// 106, HTTP 413, as soon as it crosses the limit) and whole within
/// `timeout` (a body trickled slower is refused with 107, and counted: it
/// must not hold its connection and buffer for as long as it likes).
pub async fn read_body(req: Request<Incoming>, limit: usize, timeout: Duration) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal::new(ErrorCode::LimitExceeded, format!("body over {limit} bytes")))
        }
        Ok(Err(e)) => Err(Refusal::new(ErrorCode::BadRequest, format!("cannot read the body: {e}"))),
        Err(_) => {
            metric::http_body_timeouts().increment(1);
            Err(Refusal::new(ErrorCode::BadRequest, format!("the body did not arrive within {timeout:?}")))
        }
    }
}

/// A JSON body as `T`; 107 when it is not one.
pub fn parse<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| Refusal::new(ErrorCode::BadRequest, format!("invalid body: {e}")))
}

/// A result as JSON; one that cannot be (it was published before the
/// nesting limit, say) is an error, never `null` with 200.
pub fn to_json<T: serde::Serialize>(result: &T) -> Result<Value, Refusal> {
    serde_json::to_value(result).map_err(|e| {
        tracing::warn!(error = %e, "a result could not be written as JSON");
        Refusal::new(ErrorCode::Internal, "the result could not be written as JSON")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_status_for_each_error_code() {
        assert_eq!(status_of(ErrorCode::LimitExceeded), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status_of(ErrorCode::TooManyRequests), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(ErrorCode::PermissionDenied), StatusCode::FORBIDDEN);
        assert_eq!(status_of(ErrorCode::NotAvailable), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorCode::BadRequest), StatusCode::BAD_REQUEST);
    }
}
