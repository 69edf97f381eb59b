"""Expected failures of the chain adapters, named as sentences (`fee_exceeds_max`)."""

from __future__ import annotations


class ChainError(Exception):
    """An operating failure the caller handles: `reason` is the stable code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ReorgTooDeep(ChainError):
    """The chain forked below what we keep: scanning stops until staff look at it."""

    def __init__(self, detail: str):
        super().__init__("reorg_deeper_than_max", detail)


class SignatureInvalid(ChainError):
    def __init__(self, detail: str):
        super().__init__("signature_invalid", detail)


class RpcError(ChainError):
    def __init__(self, method: str, code, message: str):
        super().__init__("node_rpc_error", f"{method}: {code} {message}")
        self.method = method
        self.code = code
        self.message = message
