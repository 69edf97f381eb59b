"""The gRPC face of a peer: maps each RPC to its role; the caller is always the pinned name of
the mTLS certificate, never a field of the request. The node may only ask for ceremonies
(Keygen, Sign, Reshare); peers may only take part in them."""

from __future__ import annotations

from concurrent import futures

import grpc

from mpc.proto import signer_pb2 as pb
from mpc.proto import signer_pb2_grpc as pb_grpc
from mpc.transport import tls
from mpc.transport.mesh import CHANNEL_OPTIONS
from node import limits

NODE = "node"  # the pinned name of the custody node's certificate


class Servicer(pb_grpc.SignerServicer):
    def __init__(self, peer):
        self.peer = peer
        self.participant = peer.participant
        self.coordinator = peer.coordinator

    def _caller(self, context) -> str | None:
        return tls.authenticated_name(context, self.peer.pins)

    def _peer_only(self, context) -> str:
        name = self._caller(context)
        if name is None or name == NODE:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_a_peer")
        return name

    def _node_only(self, context) -> None:
        if self._caller(context) != NODE:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_the_node")

    def Keygen(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.coordinator.keygen(request)

    def Sign(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.coordinator.sign(request)

    def Reshare(self, request, context):  # noqa: N802
        self._node_only(context)
        return self.coordinator.reshare(request)

    def Join(self, request, context):  # noqa: N802
        return self.participant.join(self._peer_only(context), request)

    def Start(self, request, context):  # noqa: N802
        return self.participant.start(self._peer_only(context), request.session_id)

    def Await(self, request, context):  # noqa: N802
        return self.participant.await_result(self._peer_only(context), request.session_id, request.timeout_ms / 1000)

    def Commit(self, request, context):  # noqa: N802
        return self.participant.commit(self._peer_only(context), request.session_id, request.confirm_signature)

    def Deliver(self, request, context):  # noqa: N802
        return self.participant.deliver(self._peer_only(context), request)

    def EchoHashes(self, request, context):  # noqa: N802
        return self.participant.echo(self._peer_only(context), request)

    def Abort(self, request, context):  # noqa: N802
        return self.participant.abort_from(self._peer_only(context), request)

    def Health(self, request, context):  # noqa: N802
        if self._caller(context) is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "caller_not_pinned")
        return pb.HealthReply(peer=self.peer.name, ready=self.peer.ready, active_sessions=self.participant.active_sessions())


def serve(peer) -> grpc.Server:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limits.CLUSTER_RPC_WORKERS_MAX, thread_name_prefix="rpc"),
        options=CHANNEL_OPTIONS[:2], maximum_concurrent_rpcs=limits.CLUSTER_RPC_WORKERS_MAX * 4,
    )
    pb_grpc.add_SignerServicer_to_server(Servicer(peer), server)
    port = server.add_secure_port(peer.cfg.listen, tls.server_credentials(peer.identity, peer.pins))
    if port == 0:
        raise OSError(f"cannot listen on {peer.cfg.listen}")
    server.start()
    return server
