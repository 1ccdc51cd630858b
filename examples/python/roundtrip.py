#!/usr/bin/env python3
"""A full round trip with trellisd from Python's grpcio, over the unix socket,
with default channel options.

grpcio sends the socket's path as the HTTP/2 :authority, which the Rust h2
stack refuses; trellisd normalises it on unix-socket connections, so a plain
`grpc.insecure_channel("unix:/run/trellis/trellisd.sock")` works. This script
is both the README's example and the end-to-end test of that
(bins/trellisd/tests/python.rs runs it against a trellisd in a test network
namespace); every step asserts what it got back.

    pip install -r examples/python/requirements.txt
    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/trellis/v1/agent.proto
    PYTHONPATH=gen python examples/python/roundtrip.py \
        /run/trellis/trellisd.sock /run/netns/demo

Usage: roundtrip.py SOCKET NETNS [SUBNET]. It creates the bridge network
"pyrt" on SUBNET (default 10.88.0.0/24), attaches the namespace NETNS to it,
watches, detaches and deletes the network again.
"""

import ipaddress
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from trellis.v1 import agent_pb2 as pb
from trellis.v1 import agent_pb2_grpc

NETWORK = "pyrt"
CONTAINER = "py-c1"
# Every call gets a deadline so that a broken server fails the script
# instead of hanging it; the channel itself keeps grpcio's defaults.
TIMEOUT = 30


def check_health(channel):
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", "trellis.v1.Agent"):
        req = health_pb2.HealthCheckRequest(service=service)
        reply = health.Check(req, timeout=TIMEOUT)
        assert reply.status == serving, f"health of {service!r}: {reply}"
    print("health: SERVING")


def next_event(events, kind, container=None):
    """Reads `events` until an event of `kind` (about `container`)."""
    for event in events:
        if event.kind != kind:
            continue
        if container is None or event.endpoint.container_id == container:
            return event
    raise AssertionError(f"watch ended before a {pb.Event.Kind.Name(kind)} event")


def roundtrip(channel, netns, subnet):
    agent = agent_pb2_grpc.AgentStub(channel)
    status = agent.Status(pb.StatusRequest(), timeout=TIMEOUT)
    assert status.ready, f"trellisd not ready: {list(status.reasons)}"
    print(f"status: node {status.node}, version {status.version}")

    spec = pb.NetworkSpec(
        name=NETWORK,
        mode=pb.NETWORK_MODE_BRIDGE,
        subnets=[subnet],
        bridge="trpyrt0",
    )
    net = agent.CreateNetwork(pb.CreateNetworkRequest(spec=spec), timeout=TIMEOUT)
    assert net.spec.name == NETWORK, net
    print(f"network {net.spec.name}: gateways {list(net.gateways)}")

    ep = agent.Attach(
        pb.AttachRequest(
            network=NETWORK, container_id=CONTAINER, netns=netns, ifname="eth0"
        ),
        timeout=TIMEOUT,
    )
    (addr,) = ep.addresses
    assert ipaddress.ip_interface(addr).ip in ipaddress.ip_network(subnet), addr
    print(f"attached {ep.container_id}: {addr} on {ep.host_ifname}")

    listed = agent.ListEndpoints(
        pb.ListEndpointsRequest(network=NETWORK), timeout=TIMEOUT
    ).endpoints
    assert [(e.container_id, list(e.addresses)) for e in listed] == [
        (CONTAINER, [addr])
    ], listed

    # The replay names what exists; the same stream then sees the detach.
    events = agent.Watch(pb.WatchRequest(replay=True), timeout=TIMEOUT)
    created = next_event(events, pb.Event.KIND_NETWORK_CREATED)
    assert created.network.spec.name == NETWORK, created
    attached = next_event(events, pb.Event.KIND_ENDPOINT_ATTACHED, CONTAINER)
    assert list(attached.endpoint.addresses) == [addr], attached
    agent.Detach(pb.DetachRequest(container_id=CONTAINER), timeout=TIMEOUT)
    detached = next_event(events, pb.Event.KIND_ENDPOINT_DETACHED, CONTAINER)
    assert detached.endpoint.network == NETWORK, detached
    events.cancel()
    print("watch: network created, endpoint attached, endpoint detached")

    listed = agent.ListEndpoints(pb.ListEndpointsRequest(), timeout=TIMEOUT)
    assert list(listed.endpoints) == [], listed
    agent.DeleteNetwork(pb.DeleteNetworkRequest(name=NETWORK), timeout=TIMEOUT)
    try:
        agent.GetNetwork(pb.GetNetworkRequest(name=NETWORK), timeout=TIMEOUT)
        raise AssertionError("the network is still there after DeleteNetwork")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.NOT_FOUND, e
    print("detached and deleted")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    socket, netns = sys.argv[1], sys.argv[2]
    subnet = sys.argv[3] if len(sys.argv) == 4 else "10.88.0.0/24"
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        check_health(channel)
        roundtrip(channel, netns, subnet)
    print("roundtrip ok")


if __name__ == "__main__":
    main()
