"""The signer's config file (TOML). Secrets and network identity have no defaults.

    environment = "production"          # or "test": fixture pre-params, opaque digests, test classes
    name = "peer-1"
    listen = "127.0.0.1:7001"
    metrics_listen = "127.0.0.1:9101"   # /metrics and /health
    data_dir = "data"                   # sealed shares, pre-params, vault records
    policy_file = "policy.toml"
    round_timeout_ms = 30000
    [tls]
    cert = "tls/peer-1.crt"
    key = "tls/peer-1.key"
    [sealing]
    key_id = "peer-1"
    passphrase_env = "CUSTODY_SIGNER_PASSPHRASE"   # or passphrase_file = "..."
    [node]
    tls_cert = "tls/node.crt"
    [[peers]]                           # every other peer, with its pinned certificate
    name = "peer-2"
    address = "127.0.0.1:7002"
    tls_cert = "tls/peer-2.crt"
    [test]                              # only with environment = "test"
    preparams_fixture = "..."           # fixture pre-params: never in production
    intent_checkers = ["module:Class"]
    participant = "module:Class"        # a test-only Participant subclass (a rogue peer)

Relative paths are relative to the config file.
"""

from __future__ import annotations

import os
import pathlib
import re
import tomllib
from dataclasses import dataclass, field

from node import limits
from node.log import Secret

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
ENVIRONMENTS = ("production", "test")


class ConfigError(ValueError):
    """The config is unusable; the signer refuses to start, saying why."""


@dataclass(frozen=True)
class PeerConf:
    name: str
    address: str
    tls_cert: pathlib.Path


@dataclass
class SignerConfig:
    path: pathlib.Path
    environment: str
    name: str
    listen: str
    metrics_listen: str
    data_dir: pathlib.Path
    policy_file: pathlib.Path
    tls_cert: pathlib.Path
    tls_key: pathlib.Path
    node_tls_cert: pathlib.Path
    key_id: str
    passphrase: Secret
    peers: tuple[PeerConf, ...]
    round_timeout_ms: int = limits.CLUSTER_ROUND_TIMEOUT_MS_DEFAULT
    test: dict = field(default_factory=dict)
    passphrase_file: pathlib.Path | None = None  # checked 0600 at start (mpc/signer/hygiene.py)

    @property
    def is_test(self) -> bool:
        return self.environment == "test"

    def peer(self, name: str) -> PeerConf | None:
        return next((p for p in self.peers if p.name == name), None)


def _str(d: dict, key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where}{key} is required (no default)")
    return v


def _addr(v: str, where: str) -> str:
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} must be host:port, got {v!r}")
    return v


def load(path, env=os.environ) -> SignerConfig:
    path = pathlib.Path(path).resolve()
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    base = path.parent

    def rel(v: str) -> pathlib.Path:
        p = pathlib.Path(v)
        return p if p.is_absolute() else base / p

    environment = _str(d, "environment", "")
    if environment not in ENVIRONMENTS:
        raise ConfigError(f"environment must be one of {ENVIRONMENTS}, got {environment!r}")
    name = _str(d, "name", "")
    if not NAME_RE.match(name):
        raise ConfigError(f"name {name!r}: lower-case letters, digits and '-', at most 31")
    tls = d.get("tls", {})
    sealing = d.get("sealing", {})
    key_id = _str(sealing, "key_id", "sealing.")
    passphrase_file = None
    if "passphrase_env" in sealing:
        value = env.get(sealing["passphrase_env"])
        if not value:
            raise ConfigError(f"sealing.passphrase_env: ${sealing['passphrase_env']} is not set")
    elif "passphrase_file" in sealing:
        passphrase_file = rel(sealing["passphrase_file"])
        try:
            value = passphrase_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"sealing.passphrase_file: {exc}") from None
    else:
        raise ConfigError("sealing.passphrase_env or sealing.passphrase_file is required (no default)")
    if len(value) < 12:
        raise ConfigError("the sealing passphrase must have at least 12 characters")
    peers = []
    for i, p in enumerate(d.get("peers", [])):
        pn = _str(p, "name", f"peers[{i}].")
        if not NAME_RE.match(pn) or pn == name:
            raise ConfigError(f"peers[{i}].name {pn!r} is invalid or is this peer's own name")
        peers.append(PeerConf(pn, _addr(_str(p, "address", f"peers[{i}]."), f"peers[{i}].address"), rel(_str(p, "tls_cert", f"peers[{i}]."))))
    if len({p.name for p in peers}) != len(peers):
        raise ConfigError("peers: a name appears twice")
    if len(peers) + 1 > limits.CLUSTER_PEERS_MAX:
        raise ConfigError(f"at most {limits.CLUSTER_PEERS_MAX} peers")
    rt = d.get("round_timeout_ms", limits.CLUSTER_ROUND_TIMEOUT_MS_DEFAULT)
    if not isinstance(rt, int) or not limits.CLUSTER_ROUND_TIMEOUT_MS_MIN <= rt <= limits.CLUSTER_ROUND_TIMEOUT_MS_MAX:
        raise ConfigError(f"round_timeout_ms must be {limits.CLUSTER_ROUND_TIMEOUT_MS_MIN}..{limits.CLUSTER_ROUND_TIMEOUT_MS_MAX}")
    test = d.get("test", {})
    if "test" in d and environment != "test":
        # Fixture pre-params, opaque digests, fault injection: never from a production config.
        raise ConfigError("[test] settings are refused unless environment = \"test\"")
    cfg = SignerConfig(
        path=path, environment=environment, name=name,
        listen=_addr(_str(d, "listen", ""), "listen"), metrics_listen=_addr(_str(d, "metrics_listen", ""), "metrics_listen"),
        data_dir=rel(_str(d, "data_dir", "")), policy_file=rel(_str(d, "policy_file", "")),
        tls_cert=rel(_str(tls, "cert", "tls.")), tls_key=rel(_str(tls, "key", "tls.")),
        node_tls_cert=rel(_str(d.get("node", {}), "tls_cert", "node.")),
        key_id=key_id, passphrase=Secret(value), peers=tuple(peers), round_timeout_ms=rt, test=dict(test),
        passphrase_file=passphrase_file,
    )
    for p in (cfg.tls_cert, cfg.tls_key, cfg.node_tls_cert, cfg.policy_file, *(p.tls_cert for p in peers)):
        if not p.is_file():
            raise ConfigError(f"{p}: no such file")
    return cfg
