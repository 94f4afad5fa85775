//! The JSON bodies the node POSTs to the backend and the answers it
//! accepts (docs/proxy.md shows each with an example).
//!
//! Every request carries who asks ([`Caller`]: the request id, the node,
//! the client, its user, transport and encoding) beside the request's own
//! fields. A client's data goes as `data` when it is a JSON value and as
//! `data_b64` otherwise (a protobuf client's bytes); an answer may carry
//! either.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use switchyard_proto::json::raw::as_json;

/// Who a request is about.
#[derive(Debug, Clone, Serialize)]
pub struct Caller<'a> {
    pub client: &'a str,
    /// Empty before the connect proxy named one, and for anonymous clients.
    pub user: &'a str,
    /// `websocket` or `sse`.
    pub transport: &'static str,
    /// `json` or `protobuf`.
    pub encoding: &'static str,
}

/// The whole body: the request id and node, the caller, the request.
#[derive(Serialize)]
pub struct Body<'a, R: Serialize> {
    pub request_id: &'a str,
    pub node: &'a str,
    #[serde(flatten)]
    pub caller: &'a Caller<'a>,
    #[serde(flatten)]
    pub request: R,
}

/// A client's payload: `data` (a JSON value) or `data_b64`; nothing when
/// there is none.
#[derive(Debug, Clone, Copy)]
pub struct Data<'a>(pub &'a [u8]);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            return serializer.serialize_map(Some(0))?.end();
        }
        let mut map = serializer.serialize_map(Some(1))?;
        match as_json(self.0) {
            Some(value) => map.serialize_entry("data", value)?,
            None => map.serialize_entry("data_b64", &BASE64.encode(self.0))?,
        }
        map.end()
    }
}

#[derive(Serialize)]
pub struct ConnectRequest<'a> {
    #[serde(flatten)]
    pub data: Data<'a>,
}

#[derive(Serialize)]
pub struct RefreshRequest {}

#[derive(Serialize)]
pub struct SubscribeRequest<'a> {
    pub channel: &'a str,
    #[serde(flatten)]
    pub data: Data<'a>,
}

#[derive(Serialize)]
pub struct PublishRequest<'a> {
    pub channel: &'a str,
    #[serde(flatten)]
    pub data: Data<'a>,
}

#[derive(Serialize)]
pub struct RpcRequest<'a> {
    pub method: &'a str,
    #[serde(flatten)]
    pub data: Data<'a>,
}

/// The backend's answer: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(bound = "R: DeserializeOwned")]
pub(super) struct Answer<R> {
    pub result: Option<R>,
    pub error: Option<AnswerError>,
    pub disconnect: Option<AnswerDisconnect>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AnswerError {
    pub code: u32,
    #[serde(default)]
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct AnswerDisconnect {
    pub code: u16,
    #[serde(default)]
    pub reason: String,
}

/// `connect`: who the client is.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConnectResult {
    /// The user id; empty for an anonymous client.
    pub user: String,
    /// Unix seconds after which the connection ends unless the refresh
    /// proxy extends it; none: it does not expire.
    pub expire_at: Option<u64>,
    /// Public information about the user, as a token's `info` claim.
    pub info: Option<serde_json::Value>,
    /// Channels the connection is subscribed to at once (`sub` pushes).
    pub subs: Vec<String>,
    /// Channel patterns the client may use, as a token's `channels` claim;
    /// none: no restriction.
    pub channels: Option<Vec<String>>,
}

/// `refresh`: a later expiry, or the end.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RefreshResult {
    pub expired: bool,
    pub expire_at: Option<u64>,
    pub info: Option<serde_json::Value>,
}

/// `subscribe`: the subscription is allowed (the backend's `{}`).
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeResult {}

/// `publish` (the data to publish instead, if rewritten) and `rpc` (the
/// answer's data).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DataResult {
    data: Option<Box<RawValue>>,
    data_b64: Option<String>,
}

impl DataResult {
    /// The payload, if the answer has one; an error for `data_b64` that is
    /// not base64.
    pub fn payload(&self) -> Result<Option<Bytes>, String> {
        match (&self.data, &self.data_b64) {
            (Some(raw), _) => Ok(Some(Bytes::copy_from_slice(raw.get().as_bytes()))),
            (None, Some(b64)) => BASE64.decode(b64).map(|b| Some(Bytes::from(b))).map_err(|e| format!("data_b64: {e}")),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_carry_the_caller_and_the_data() {
        let caller = Caller { client: "n1-7", user: "42", transport: "websocket", encoding: "json" };
        let body = Body {
            request_id: "n1-1",
            node: "n1",
            caller: &caller,
            request: PublishRequest { channel: "chat:r1", data: Data(br#"{"text":"hi"}"#) },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"request_id":"n1-1","node":"n1","client":"n1-7","user":"42","transport":"websocket","encoding":"json","channel":"chat:r1","data":{"text":"hi"}}"#
        );
        let binary = serde_json::to_value(RpcRequest { method: "m", data: Data(&[0xff, 0]) }).unwrap();
        assert_eq!(binary, serde_json::json!({"method": "m", "data_b64": "/wA="}));
        let none = serde_json::to_value(ConnectRequest { data: Data(b"") }).unwrap();
        assert_eq!(none, serde_json::json!({}));
    }

    #[test]
    fn answers_parse() {
        let a: Answer<ConnectResult> =
            serde_json::from_str(r#"{"result": {"user": "42", "subs": ["news"], "extra": 1}}"#).unwrap();
        let result = a.result.unwrap();
        assert_eq!((result.user.as_str(), result.subs.len()), ("42", 1));
        let a: Answer<DataResult> = serde_json::from_str(r#"{"result": {"data": {"a": [1, 2]}}}"#).unwrap();
        assert_eq!(a.result.unwrap().payload().unwrap().unwrap(), &br#"{"a": [1, 2]}"#[..]);
        let a: Answer<DataResult> = serde_json::from_str(r#"{"result": {"data_b64": "/wA="}}"#).unwrap();
        assert_eq!(a.result.unwrap().payload().unwrap().unwrap(), &[0xff, 0][..]);
        let a: Answer<DataResult> = serde_json::from_str(r#"{"error": {"code": 1001, "message": "no"}}"#).unwrap();
        assert_eq!(a.error.unwrap().code, 1001);
        let a: Answer<SubscribeResult> = serde_json::from_str(r#"{"disconnect": {"code": 4003}}"#).unwrap();
        assert_eq!(a.disconnect.unwrap().code, 4003);
    }
}
