#!/usr/bin/env python3
"""trellisd's BGP peers from Python's grpcio (trellis.v1.Bgp), over the unix
socket with default channel options: add a peer, see it listed with its state
and where it came from, have a bad value refused by name, remove it.
bins/trellisd/tests/python.rs runs it against a trellisd with [bgp] on.

    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen \
        proto/trellis/v1/bgp.proto
    PYTHONPATH=gen python examples/python/bgp_peers.py /run/trellis/trellisd.sock 10.99.0.9 65009

Usage: bgp_peers.py SOCKET PEER_ADDRESS PEER_AS
"""

import sys

import grpc
from trellis.v1 import bgp_pb2 as pb
from trellis.v1 import bgp_pb2_grpc

TIMEOUT = 30


def main(socket, address, asn):
    channel = grpc.insecure_channel(f"unix:{socket}")
    bgp = bgp_pb2_grpc.BgpStub(channel)

    peer = bgp.AddPeer(
        pb.AddBgpPeerRequest(
            peer=pb.BgpPeerConfig(address=address, remote_as=asn, hold_time=30, communities=["65009:7"])
        ),
        timeout=TIMEOUT,
    )
    assert peer.source == "api", peer
    assert peer.config.hold_time == 30, peer
    print(f"added {peer.config.address} AS {peer.config.remote_as}: {peer.state}")

    listed = bgp.ListPeers(pb.ListBgpPeersRequest(), timeout=TIMEOUT).peers
    mine = [p for p in listed if p.config.address == address]
    assert len(mine) == 1, listed
    assert mine[0].state in ("Idle", "Connect", "Active", "OpenSent"), mine[0]
    print(f"listed: {[(p.config.address, p.source, p.state) for p in listed]}")

    try:
        bgp.AddPeer(
            pb.AddBgpPeerRequest(peer=pb.BgpPeerConfig(address="10.99.0.10", remote_as=asn, hold_time=2)),
            timeout=TIMEOUT,
        )
        raise AssertionError("a hold time of 2 s was accepted")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
        assert e.details().startswith("peer.hold_time 2"), e.details()
        print(f"refused: {e.code().name}: {e.details()}")

    bgp.RemovePeer(pb.RemoveBgpPeerRequest(address=address), timeout=TIMEOUT)
    left = [p.config.address for p in bgp.ListPeers(pb.ListBgpPeersRequest(), timeout=TIMEOUT).peers]
    assert address not in left, left
    print("bgp ok")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
