//! `rpc`: a call to the application's backend (the RPC proxy) over the
//! client's own connection; its answer is the reply.

use super::session::ClientSession;
use super::{Refusal, Reply};
use crate::proxy::bodies::{Data, DataResult, RpcRequest as ProxyRpc};
use switchyard_core::codes::ErrorCode;
use switchyard_core::protocol::Protocol;
use switchyard_proto::json::raw::as_json;
use switchyard_proto::v1::{RpcRequest, RpcResult, server_frame};

impl ClientSession {
    pub(super) async fn rpc(&mut self, request: RpcRequest) -> Reply {
        let node = self.node.clone();
        let Some(endpoint) = node.proxies.rpc.as_ref() else {
            return Err(Refusal::new(ErrorCode::UnknownCommand, "rpc: no backend is configured (proxy.rpc.url)"));
        };
        let body = ProxyRpc { method: &request.method, data: Data(&request.data) };
        let result = Self::settle(self.ask::<_, DataResult>(endpoint, body).await)?;
        let data = result.payload().map_err(|e| Refusal::new(ErrorCode::NotAvailable, e))?.unwrap_or_default();
        // The JSON encoding carries JSON values only.
        if self.protocol == Protocol::Json && !data.is_empty() && as_json(&data).is_none() {
            return Err(Refusal::new(ErrorCode::Internal, "rpc: the backend answered bytes to a JSON client"));
        }
        Ok(Some(server_frame::Message::Rpc(RpcResult { data })))
    }
}
