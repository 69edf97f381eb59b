"""`custody cluster init --peers N --threshold T --dir DIR`: a local signer cluster's files.

Writes, for each peer, its TLS key and self-signed certificate, the other peers' (and the
node's) certificates to pin, its config, its policy and — in a test cluster, or a local one
asked for it (`custody dev up`) — a passphrase file; for the node, its TLS identity and Ed25519
request-signing key; and dev approver keys. Private keys and passphrase files are written 0600
in 0700 folders (a signer refuses to start otherwise: mpc/signer/hygiene.py). In production
each operator makes their own key and certificate and the operators exchange only public
certificates; this command is for a local cluster.

    DIR/cluster.json              peers (name, address, cert), threshold, node files
    DIR/node/{tls.crt,tls.key,signing.key}
    DIR/approvers/<id>.key        Ed25519 seeds (hex) of the dev approvers
    DIR/<peer>/signer.toml policy.toml tls.{crt,key} pins/*.crt passphrase data/
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import sys

from nacl.signing import SigningKey

from mpc.transport import tls

APPROVERS = ("approver-1", "approver-2")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("init", help="write certificates, keys and configs for a local cluster")
    p.add_argument("--peers", type=int, required=True)
    p.add_argument("--threshold", type=int, required=True, help="t: any t+1 peers sign")
    p.add_argument("--dir", required=True)
    p.add_argument("--base-port", type=int, default=7100, help="peer i listens on base+i, metrics on base+100+i")
    p.add_argument("--environment", choices=("production", "test"), default="production")
    p.add_argument("--preparams-fixtures", help="test only: a directory of fixture pre-params, one file per peer")


def _write(path: pathlib.Path, data, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not mode & 0o077:
        path.parent.chmod(0o700)  # a private file lives in a private folder
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # an existing file would keep its old mode
        f.write(data)


def _toml_str(s: str) -> str:
    return json.dumps(str(s))


def init_cluster(root, peers: int, threshold: int, ports: list[int], metrics_ports: list[int],
                 environment: str = "production", preparams_fixtures: list[pathlib.Path] | None = None,
                 round_timeout_ms: int | None = None, test_extra: dict | None = None, policy_extra: str = "",
                 passphrase_file: bool | None = None) -> dict:
    """`passphrase_file`: each peer's passphrase in a 0600 file beside its config; by default
    only in a test cluster (a production one reads $CUSTODY_SIGNER_PASSPHRASE)."""
    root = pathlib.Path(root).resolve()
    if passphrase_file is None:
        passphrase_file = environment == "test"
    if not 2 <= peers <= 16:
        raise ValueError("--peers must be 2..16")
    if not 1 <= threshold < peers:
        raise ValueError("--threshold must be 1..peers-1 (t+1 peers sign)")
    names = [f"peer-{i}" for i in range(1, peers + 1)]
    ids = {n: tls.make_identity(n) for n in names}
    node_id = tls.make_identity("node")
    node_key = SigningKey.generate()
    _write(root / "node" / "tls.crt", node_id.cert_pem)
    _write(root / "node" / "tls.key", node_id.key_pem, 0o600)
    _write(root / "node" / "signing.key", node_key.encode().hex(), 0o600)
    approver_pubs = {}
    for a in APPROVERS:
        k = SigningKey.generate()
        _write(root / "approvers" / f"{a}.key", k.encode().hex(), 0o600)
        approver_pubs[a] = k.verify_key.encode().hex()
    addresses = {n: f"127.0.0.1:{ports[i]}" for i, n in enumerate(names)}
    for i, n in enumerate(names):
        d = root / n
        _write(d / "tls.crt", ids[n].cert_pem)
        _write(d / "tls.key", ids[n].key_pem, 0o600)
        _write(d / "pins" / "node.crt", node_id.cert_pem)
        for m in names:
            if m != n:
                _write(d / "pins" / f"{m}.crt", ids[m].cert_pem)
        lines = [
            f"environment = {_toml_str(environment)}",
            f"name = {_toml_str(n)}",
            f"listen = {_toml_str(addresses[n])}",
            f"metrics_listen = {_toml_str(f'127.0.0.1:{metrics_ports[i]}')}",
            'data_dir = "data"',
            'policy_file = "policy.toml"',
        ]
        if round_timeout_ms:
            lines.append(f"round_timeout_ms = {round_timeout_ms}")
        lines += ["", "[tls]", 'cert = "tls.crt"', 'key = "tls.key"', "", "[sealing]", f"key_id = {_toml_str(n + '-1')}"]
        if passphrase_file:
            # Local/test cluster only: the passphrase sits in a 0600 file next to the config.
            _write(d / "passphrase", secrets.token_urlsafe(24), 0o600)
            lines.append('passphrase_file = "passphrase"')
        else:
            lines.append('passphrase_env = "CUSTODY_SIGNER_PASSPHRASE"')
        lines += ["", "[node]", 'tls_cert = "pins/node.crt"']
        for m in names:
            if m != n:
                lines += ["", "[[peers]]", f"name = {_toml_str(m)}", f"address = {_toml_str(addresses[m])}", f"tls_cert = {_toml_str(f'pins/{m}.crt')}"]
        if environment == "test":
            lines += ["", "[test]"]
            if preparams_fixtures:
                lines.append(f"preparams_fixture = {_toml_str(str(preparams_fixtures[i % len(preparams_fixtures)]))}")
            for k, v in (test_extra or {}).items():
                lines.append(f"{k} = {json.dumps(v)}")
        _write(d / "signer.toml", "\n".join(lines) + "\n")
        _write(d / "policy.toml", _policy(node_key.verify_key.encode().hex(), approver_pubs) + policy_extra)
    info = {
        "threshold": threshold,
        "peers": [{"name": n, "address": addresses[n], "tls_cert": str(root / n / "tls.crt"), "dir": str(root / n),
                   "metrics": f"127.0.0.1:{metrics_ports[i]}"} for i, n in enumerate(names)],
        "node": {"tls_cert": str(root / "node" / "tls.crt"), "tls_key": str(root / "node" / "tls.key"),
                 "signing_key": str(root / "node" / "signing.key")},
        "approvers": {a: str(root / "approvers" / f"{a}.key") for a in APPROVERS},
    }
    _write(root / "cluster.json", json.dumps(info, indent=2))
    return info


def _policy(node_pub: str, approvers: dict[str, str]) -> str:
    lines = ["[node]", f'public_key = "{node_pub}"', "", "[approvers]"]
    lines += [f'{a} = "{pk}"' for a, pk in approvers.items()]
    # Dev bands: one approval up to 1 BTC / 1 ETH, two above, nothing above 50.
    for asset, unit in (("BTC", 100_000_000), ("ETH", 10**18)):
        lines += ["", "[[bands]]", f'asset = "{asset}"', f'amount_max = "{unit}"', "approvals_min = 1",
                  "", "[[bands]]", f'asset = "{asset}"', f'amount_max = "{50 * unit}"', "approvals_min = 2"]
    # Dev fee limits: the node's dev fee_max (api/dev.py) and its fat-finger fee rate
    # (CHAINS_BTC_FEE_RATE_SAT_VB_MAX); a tip of at most 1,000 gwei.
    lines += ["", "[networks]", 'bitcoin = ["regtest"]', 'ethereum = ["1337"]']  # the dev chains
    lines += ["", "[fees.bitcoin]", "fee_max = 1000000", "fee_rate_sat_vb_max = 2000",
              "", "[fees.ethereum]", f'fee_max = "{10**16}"', f'priority_fee_wei_max = "{10**12}"']
    lines += ["", "[rate_limits]", "signatures_per_hour = 3600", "", "[rate_limits.amount_per_hour]",
              f'BTC = "{100 * 100_000_000}"', f'ETH = "{100 * 10**18}"', "", "[ceremonies]", "keygen_allowed = true",
              "# key generation and resharing: approved by the vault's quorum (mpc/signer/policy.py)",
              "threshold_min = 1", "n_of_n_allowed = false", "operators_min = 2", ""]
    return "\n".join(lines)


def run(args) -> int:
    if args.action != "init":
        return 2
    n = args.peers
    fixtures = None
    if args.preparams_fixtures:
        if args.environment != "test":
            print("custody cluster init: fixture pre-params are for --environment test only", file=sys.stderr)
            return 2
        fixtures = sorted(pathlib.Path(args.preparams_fixtures).glob("preparams-*.json"))
    try:
        info = init_cluster(args.dir, n, args.threshold, [args.base_port + i for i in range(1, n + 1)],
                            [args.base_port + 100 + i for i in range(1, n + 1)], args.environment, fixtures)
    except ValueError as exc:
        print(f"custody cluster init: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"dir": str(pathlib.Path(args.dir).resolve()), "peers": [p["name"] for p in info["peers"]],
                      "threshold": args.threshold}))
    return 0
