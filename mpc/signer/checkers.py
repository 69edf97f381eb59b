"""Which intent checker parses which chain's transactions (node/ports.py IntentChecker).

Production uses the chain adapters' checkers (`chains.intent_checker(chain)`); a test config
may add its own by import path (refused unless environment = "test", see config.py).
"""

from __future__ import annotations

import importlib

from node.ports import IntentChecker

CHAINS = ("bitcoin", "ethereum")


def _load(ref: str) -> IntentChecker:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    checker = obj() if isinstance(obj, type) else obj
    assert isinstance(checker, IntentChecker), f"{ref} does not implement IntentChecker"
    return checker


def load(extra_refs=()) -> dict[str, IntentChecker]:
    import chains

    out: dict[str, IntentChecker] = {}
    for chain in CHAINS:
        try:
            out[chain] = chains.intent_checker(chain)
        except (ImportError, ValueError):
            continue  # that adapter is not installed: requests for its chain are refused
        assert isinstance(out[chain], IntentChecker) and out[chain].chain == chain
    for ref in extra_refs:
        c = _load(ref)
        out[c.chain] = c
    return out
