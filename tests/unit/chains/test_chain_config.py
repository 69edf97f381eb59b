"""Chain settings refuse what has no safe default; the `custody chains address` command."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.cli import main as custody
from chains.bitcoin.tx import p2wpkh_address
from chains.config import BitcoinSettings, EthereumSettings
from chains.ethereum.tx import address_of
from chains.keys import Bip32VaultKeys

XPUB = "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB"
BTC_OK = dict(network="regtest", rpc_url="http://127.0.0.1:18334", rpc_user="u", rpc_password="p")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith(("CUSTODY_BTC_", "CUSTODY_ETH_")):
            monkeypatch.delenv(k)


@pytest.mark.parametrize(
    "missing_or_bad",
    [
        {"network": None},
        {"rpc_password": None},
        {"network": "signet"},
        {"confirmations": 0},
        {"fee_rate_fallback_sat_vb": 10**9},
    ],
)
def test_bitcoin_settings_refuse_missing_identity_secrets_and_out_of_range(missing_or_bad):
    fields = {**BTC_OK, **missing_or_bad}
    fields = {k: v for k, v in fields.items() if v is not None}
    with pytest.raises(ValidationError):
        BitcoinSettings(**fields)


def test_bitcoin_settings_keep_the_password_secret():
    s = BitcoinSettings(**BTC_OK)
    assert "p" != str(s.rpc_password) and s.rpc_password.get_secret_value() == "p"


def test_ethereum_settings_normalise_tokens_and_refuse_bad_ones():
    s = EthereumSettings(chain_id=1, rpc_url="http://x", tokens={"0x" + "ab" * 20: 20})
    assert s.tokens == {"0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB": 20}
    for tokens in ({"0x1234": 3}, {"0x" + "ab" * 20: 0}):
        with pytest.raises(ValidationError):
            EthereumSettings(chain_id=1, rpc_url="http://x", tokens=tokens)
    with pytest.raises(ValidationError):
        EthereumSettings(rpc_url="http://x")  # no chain id: no default network identity


def test_cli_prints_our_addresses(capsys):
    pub = Bip32VaultKeys.from_xpub(XPUB).child_public_key((0, 17))
    assert custody(["chains", "address", "--xpub", XPUB, "--chain", "bitcoin", "--network", "regtest", "--path", "0/17"]) == 0
    assert custody(["chains", "address", "--xpub", XPUB, "--chain", "ethereum", "--path", "0/17"]) == 0
    assert capsys.readouterr().out.split() == [p2wpkh_address(pub, "regtest"), address_of(pub)]


@pytest.mark.parametrize("path", ["0/2147483648", "0/x", "0/-1"])
def test_cli_refuses_bad_paths(path, capsys):
    assert custody(["chains", "address", "--xpub", XPUB, "--chain", "ethereum", "--path", path]) == 2
    assert "custody chains:" in capsys.readouterr().err
