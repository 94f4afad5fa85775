//! The same delivery on a 3-master Redis Cluster with sharded pub/sub, and
//! after the channel's slot moves to another master.

use switchyard_client::{Client, Encoding, Options};
use switchyard_testkit::{RedisCluster, TestNode, test_config, within};

async fn node(cluster: &RedisCluster) -> TestNode {
    let mut config = test_config();
    config.broker.redis_cluster = cluster.urls();
    TestNode::start(config).await
}

async fn expect(client: &mut Client, data: &str) {
    let p = within(data, client.next_publication()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&p.data), data);
}

#[tokio::test]
async fn sharded_delivery_survives_a_slot_migration() {
    let cluster = RedisCluster::start().await;
    let a = node(&cluster).await;
    let b = node(&cluster).await;
    let mut subscriber = Client::connect(&a.ws_url(), Options::new(Encoding::Json)).await.unwrap();
    subscriber.subscribe("chat").await.unwrap();
    let publisher = std::sync::Arc::new(Client::connect(&b.ws_url(), Options::new(Encoding::Protobuf)).await.unwrap());

    publisher.publish("chat", "\"one\"").await.unwrap();
    expect(&mut subscriber, "\"one\"").await;

    // A backend with a cluster-aware client (redis-cli -c) publishes too.
    let slot = cluster.slot_of("chat").await;
    assert_eq!(slot, cluster.slot_of("switchyard:{chat}").await, "the pub/sub name is in the channel's slot");
    let owner = cluster.owner_of(slot).await;
    let fcall = cluster.nodes[owner].cli(&["-c", "FCALL", "switchyard_publish", "1", "chat", "\"two\""]).await;
    assert_eq!(fcall, "\n0\n");
    expect(&mut subscriber, "\"two\"").await;
    // Exactly one node holds the shard channel: the slot's owner.
    let numsub = cluster.nodes[owner].cli(&["PUBSUB", "SHARDNUMSUB", "switchyard:{chat}"]).await;
    assert_eq!(numsub, "switchyard:{chat}\n1\n");

    let new_owner = cluster.move_slot(slot).await;
    assert_ne!(new_owner, owner);
    // The subscription follows the slot: publishes keep arriving. (Those
    // sent while it moves may be lost: this channel keeps no history.)
    let stop = tokio_util::sync::CancellationToken::new();
    let publishing = tokio::spawn({
        let (publisher, stop) = (publisher.clone(), stop.clone());
        async move {
            for n in 0..100_000 {
                if stop.is_cancelled() {
                    return;
                }
                publisher.publish("chat", format!("\"after move {n}\"")).await.unwrap();
            }
        }
    });
    within("delivery after the move", async {
        while !String::from_utf8_lossy(&subscriber.next_publication().await.unwrap().data).starts_with("\"after move") {
        }
    })
    .await;
    stop.cancel();
    publishing.await.unwrap();
    // Redis dropped the subscription (an unsolicited SUNSUBSCRIBE) and the
    // node took it again on the new owner.
    a.wait_for_sample("switchyard_broker_resubscribes_total", "", 1.0).await;
    let numsub = cluster.nodes[new_owner].cli(&["PUBSUB", "SHARDNUMSUB", "switchyard:{chat}"]).await;
    assert_eq!(numsub, "switchyard:{chat}\n1\n");
}
