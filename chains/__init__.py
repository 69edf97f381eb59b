"""Chain adapters (chains/bitcoin, chains/ethereum): each implements node.ports.ChainAdapter,
and each has the IntentChecker the signer peers call before they sign."""

from __future__ import annotations


def intent_checker(chain: str):
    """The IntentChecker for `chain` ("bitcoin" | "ethereum"); imports only that chain's code."""
    if chain == "bitcoin":
        from chains.bitcoin.intent import BitcoinIntentChecker

        return BitcoinIntentChecker()
    if chain == "ethereum":
        from chains.ethereum.intent import EthereumIntentChecker

        return EthereumIntentChecker()
    raise ValueError(f"no intent checker for chain {chain!r}")
