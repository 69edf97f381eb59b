"""The JSON-RPC client fails with a named reason, within its deadline, when the node is away,
silent, or answers garbage."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from chains.bitcoin.rpc import BitcoinRpc
from chains.errors import ChainError, RpcError
from node.log import Secret
from tests.support.procs import free_port


class OneShotServer:
    """Accepts connections on 127.0.0.1 and answers each with `reply` (None: never answers)."""

    def __init__(self, reply: bytes | None):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            conn.recv(65536)
            if self.reply is not None:
                conn.sendall(self.reply)
                conn.close()

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


def http(status: int, body: bytes) -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    "reply,reason",
    [
        (http(200, b"not json"), "node_bad_response"),
        (http(200, b"[1, 2]"), "node_bad_response"),
        (http(401, b""), "node_bad_response"),
        (http(500, b'{"result": null, "error": {"code": -32601, "message": "Method not found"}, "id": 1}'), "node_rpc_error"),
    ],
)
def test_bad_answers_are_named(reply, reason):
    server = OneShotServer(reply)
    try:
        with pytest.raises(ChainError) as exc:
            BitcoinRpc(f"http://127.0.0.1:{server.port}", "u", Secret("p"), timeout_s=2).call("getblockcount")
        assert exc.value.reason == reason
        if reason == "node_rpc_error":
            assert isinstance(exc.value, RpcError) and exc.value.code == -32601
    finally:
        server.close()


def test_an_unreachable_node_is_named():
    with pytest.raises(ChainError) as exc:
        BitcoinRpc(f"http://127.0.0.1:{free_port()}", "u", Secret("p"), timeout_s=2).call("getblockcount")
    assert exc.value.reason == "node_unreachable"


def test_a_silent_node_hits_the_deadline():
    server = OneShotServer(None)
    try:
        t0 = time.monotonic()
        with pytest.raises(ChainError) as exc:
            BitcoinRpc(f"http://127.0.0.1:{server.port}", "u", Secret("p"), timeout_s=0.5).call("getblockcount")
        assert exc.value.reason == "node_unreachable"
        assert time.monotonic() - t0 < 5, "the deadline held"
    finally:
        server.close()


def test_the_password_is_a_secret():
    with pytest.raises(AssertionError):
        BitcoinRpc("http://127.0.0.1:1", "u", "plain-password")
