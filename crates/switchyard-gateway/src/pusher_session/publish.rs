//! An event into the cluster: from a client (`client-*`) or from the HTTP
//! API. It crosses nodes in an Envelope that carries its name and the
//! socket that must not get it; cache channels keep it as their last.

use crate::node::{Node, publish_options};
use crate::refusal::Refusal;
use bytes::Bytes;
use switchyard_core::clock::unix_micros;
use switchyard_core::metric;
use switchyard_proto::v1::{ClientInfo, Envelope};

/// Publishes `event` with `data` (raw JSON: a string from the API, a
/// client's value) on cluster channel `cluster`, to every subscriber but
/// the connection `except_socket` names.
pub async fn publish_event(
    node: &Node,
    cluster: &str,
    event: &str,
    data: Bytes,
    except_socket: Option<&str>,
    publisher: Option<ClientInfo>,
) -> Result<(), Refusal> {
    let (_, namespace) = crate::command::resolve(node, cluster)?;
    let envelope = Envelope {
        channel: cluster.to_owned(),
        data,
        published_at_us: unix_micros(),
        origin_node: node.name.clone(),
        publisher,
        event: event.to_owned(),
        except_socket: except_socket.unwrap_or_default().to_owned(),
        ..Envelope::default()
    };
    node.stores.broker.publish(envelope, publish_options(namespace)).await?;
    metric::broker_published().increment(1);
    Ok(())
}
