#!/usr/bin/env python3
"""Publish to a switchyard channel by building the Envelope yourself.

Most backends should call the function library instead, which needs no
protobuf at all:

    FCALL switchyard_publish 1 <channel> <payload>

This is the raw path, for backends that want to set Envelope fields
themselves. Generate the Python classes from the repository's proto files
once (pip install redis protobuf grpcio-tools):

    python -m grpc_tools.protoc -I proto --python_out=gen \
        proto/switchyard/v1/client.proto proto/switchyard/v1/cluster.proto

then run, with gen/ on PYTHONPATH:

    PYTHONPATH=gen python docs/examples/publish_envelope.py \
        --redis redis://127.0.0.1:6379 news '{"text": "hi"}'

On a Redis Cluster, pass --cluster: the Envelope goes out with SPUBLISH on
the shard that owns the channel.
"""

import argparse
import time

import redis
from redis.cluster import RedisCluster

from switchyard.v1 import cluster_pb2


def pubsub_name(prefix: str, channel: str) -> str:
    # The channel is a hash tag, so on a Cluster its pub/sub name lives in
    # the channel's own slot.
    return f"{prefix}:{{{channel}}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--prefix", default="switchyard")
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("channel")
    parser.add_argument("payload", help="a JSON value, or any text")
    args = parser.parse_args()

    envelope = cluster_pb2.Envelope(
        channel=args.channel,
        data=args.payload.encode(),
        published_at_us=time.time_ns() // 1000,
    )
    envelope.publisher.user = "python-backend"
    body = envelope.SerializeToString()
    name = pubsub_name(args.prefix, args.channel)

    if args.cluster:
        client = RedisCluster.from_url(args.redis)
        receivers = client.execute_command("SPUBLISH", name, body, target_nodes=client.get_node_from_key(name))
    else:
        client = redis.Redis.from_url(args.redis)
        receivers = client.publish(name, body)
    # The number of gateway nodes that have a subscriber on the channel.
    print(receivers)


if __name__ == "__main__":
    main()
