"""A small JSON-RPC 1.0 client for bitcoind/btcd over httpx (basic auth, explicit timeout).

Amounts in JSON are parsed as Decimal, never float; the adapter reads values from raw
transactions anyway.
"""

from __future__ import annotations

import decimal
import itertools
import json
import logging

import httpx

from chains.errors import ChainError, RpcError
from node import limits
from node.log import Secret

logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


class BitcoinRpc:
    def __init__(self, url: str, user: str, password: Secret, timeout_s: float = limits.CHAINS_RPC_TIMEOUT_S):
        assert isinstance(password, Secret), "the RPC password travels as a Secret"
        self.url = url
        self._client = httpx.Client(
            auth=(user, password.reveal()), timeout=httpx.Timeout(timeout_s), headers={"content-type": "application/json"}
        )
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, *params):
        body = {"jsonrpc": "1.0", "id": next(self._ids), "method": method, "params": list(params)}
        try:
            with self._client.stream("POST", self.url, content=json.dumps(body)) as resp:
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > limits.CHAINS_RPC_RESPONSE_BYTES_MAX:
                        raise ChainError("node_response_too_large", method)
                    chunks.append(chunk)
                status = resp.status_code
        except httpx.HTTPError as exc:
            raise ChainError("node_unreachable", f"{method}: {exc!r}") from exc
        content = b"".join(chunks)
        try:
            doc = json.loads(content, parse_float=decimal.Decimal)
        except ValueError:
            raise ChainError("node_bad_response", f"{method}: HTTP {status} {content[:200]!r}") from None
        if not isinstance(doc, dict):
            raise ChainError("node_bad_response", f"{method}: not a JSON-RPC object")
        if doc.get("error"):
            err = doc["error"]
            raise RpcError(method, err.get("code"), err.get("message", ""))
        if status != 200:
            raise ChainError("node_bad_response", f"{method}: HTTP {status}")
        return doc.get("result")
