"""Which intent checker parses which chain's transactions (node/ports.py IntentChecker).

Production uses the chain adapters' checkers; a test config may add its own by import path
(refused unless environment = "test", see config.py).
"""

from __future__ import annotations

import importlib

from node.ports import IntentChecker

# chain -> "module:attribute" of the chain adapters' IntentChecker implementations.
PRODUCTION = {
    "bitcoin": "chains.bitcoin.intent:BitcoinIntentChecker",
    "ethereum": "chains.ethereum.intent:EthereumIntentChecker",
}


def _load(ref: str) -> IntentChecker:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    checker = obj() if isinstance(obj, type) else obj
    assert isinstance(checker, IntentChecker), f"{ref} does not implement IntentChecker"
    return checker


def load(extra_refs=()) -> dict[str, IntentChecker]:
    out: dict[str, IntentChecker] = {}
    for chain, ref in PRODUCTION.items():
        try:
            out[chain] = _load(ref)
        except (ImportError, AttributeError):
            continue  # that adapter is not installed: requests for its chain are refused
    for ref in extra_refs:
        c = _load(ref)
        out[c.chain] = c
    return out
