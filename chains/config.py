"""Settings of the chain adapters (pydantic-settings, from the environment) and the factories
that the composition root (api/) calls. Network identity and secrets have no defaults."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chains.bitcoin.adapter import BitcoinAdapter
from chains.bitcoin.rpc import BitcoinRpc
from chains.errors import ChainError
from chains.ethereum.adapter import EthereumAdapter
from chains.ethereum.tx import checksum
from chains.state import ChainState
from node import limits
from node.log import Secret


class BitcoinSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_BTC_", extra="forbid")

    network: Literal["mainnet", "testnet", "regtest"]
    rpc_url: str
    rpc_user: str
    rpc_password: SecretStr
    confirmations: int = Field(6, ge=1, le=limits.CHAINS_CONFIRMATIONS_MAX)
    fee_rate_fallback_sat_vb: int = Field(
        10, ge=limits.CHAINS_BTC_FEE_RATE_SAT_VB_MIN, le=limits.CHAINS_BTC_FEE_RATE_SAT_VB_MAX
    )
    start_height: int | None = Field(None, ge=0)


class EthereumSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTODY_ETH_", extra="forbid")

    chain_id: int = Field(ge=1)
    rpc_url: str
    confirmations: int = Field(12, ge=1, le=limits.CHAINS_CONFIRMATIONS_MAX)
    # ERC-20 contracts we accept deposits of -> their confirmation depth.
    tokens: dict[str, int] = Field(default_factory=dict)
    max_fee_per_gas_fallback_wei: int = Field(100 * 10**9, ge=1)
    max_priority_fee_per_gas_fallback_wei: int = Field(2 * 10**9, ge=0)
    start_height: int | None = Field(None, ge=0)

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, v: dict[str, int]) -> dict[str, int]:
        out = {}
        for contract, n in v.items():
            if not 1 <= n <= limits.CHAINS_CONFIRMATIONS_MAX:
                raise ValueError(f"confirmations for {contract} out of range: {n}")
            try:
                out[checksum(contract)] = n
            except ChainError as exc:
                raise ValueError(str(exc)) from None
        return out


def open_bitcoin(settings: BitcoinSettings, engine: sa.Engine) -> BitcoinAdapter:
    rpc = BitcoinRpc(settings.rpc_url, settings.rpc_user, Secret(settings.rpc_password.get_secret_value()))
    return BitcoinAdapter(
        rpc,
        ChainState(engine, f"bitcoin:{settings.network}"),
        settings.network,
        confirmations=settings.confirmations,
        fee_rate_fallback_sat_vb=settings.fee_rate_fallback_sat_vb,
        start_height=settings.start_height,
    )


def open_ethereum(settings: EthereumSettings, engine: sa.Engine) -> EthereumAdapter:
    confirmations = {"ETH": settings.confirmations, **{f"ERC20:{c}": n for c, n in settings.tokens.items()}}
    return EthereumAdapter.connect(
        settings.rpc_url,
        ChainState(engine, f"ethereum:{settings.chain_id}"),
        settings.chain_id,
        confirmations=confirmations,
        max_fee_per_gas_fallback=settings.max_fee_per_gas_fallback_wei,
        max_priority_fee_per_gas_fallback=settings.max_priority_fee_per_gas_fallback_wei,
        start_height=settings.start_height,
    )
