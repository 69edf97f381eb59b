"""`custody vault`: key ceremonies as approved intents (issue 15), in three steps.

    custody vault reshare propose --cluster-file C --vaults-file V --vault hot \
        --committee peer-2,peer-3,peer-4 --threshold 1 --out rotate.json
    custody vault approve --ceremony rotate.json --approver-id approver-1 --key-file K   # each approver
    custody vault reshare run --cluster-file C --vaults-file V --ceremony rotate.json

    custody vault keygen propose --cluster-file C --vault-id cold-2 --committee ... --threshold 2 --out new.json
    custody vault keygen run --cluster-file C --vaults-file V --ceremony new.json [--kind cold]
    custody vault retire propose --cluster-file C --vaults-file V --vault old --out retire.json   # funds moved first
    custody vault retire run --cluster-file C --vaults-file V --ceremony retire.json

`propose` writes the CeremonyIntent (mpc/wire/ceremony.py): the vault, its public key, the old and
new committee (peer names) and threshold, and the digest of the vault's policy the peers will
enforce, computed from a signer policy file (`--policy`; by default the first peer's in a local
cluster made by `custody cluster init`). `approve` shows the intent and signs it, timed, with the
approver's own key on the approver's machine (only the signature goes into the file). `run` sends
it with its approvals; every peer of the old quorum and of the new committee checks them itself,
and the delay (a cold vault's) counts from the approvals' signed times. After a reshare the
vaults file names the new committee (the node reads it at its next start).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from nacl.signing import SigningKey

from mpc.wire import ceremony as cer


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="vault_command", required=True)
    for kind in ("reshare", "keygen", "retire"):
        k = sub.add_parser(kind, help=f"{kind} of a vault: propose, then run once approved")
        ks = k.add_subparsers(dest="step", required=True)
        p = ks.add_parser("propose", help="write the ceremony intent for the approvers")
        p.add_argument("--cluster-file", required=True, help="cluster.json (custody cluster init)")
        if kind in ("reshare", "retire"):
            p.add_argument("--vaults-file", required=True, help="the node's vaults.json")
            p.add_argument("--vault", required=True, help="the vault's name in the vaults file (e.g. hot)")
        else:
            p.add_argument("--vault-id", required=True)
        if kind == "reshare":
            p.add_argument("--lower-threshold", action="store_true", help="consent to a threshold below the current one")
        if kind != "retire":
            p.add_argument("--committee", required=True, help="the new committee: peer names, comma-separated")
            p.add_argument("--threshold", type=int, required=True, help="t: any t+1 of the committee sign")
        p.add_argument("--policy", help="a signer policy file (default: the first peer's in a local cluster)")
        p.add_argument("--out", required=True)
        r = ks.add_parser("run", help="send the approved ceremony to the cluster")
        r.add_argument("--cluster-file", required=True)
        r.add_argument("--vaults-file", required=True)
        r.add_argument("--ceremony", required=True)
        r.add_argument("--coordinator", help="a peer of the (old) committee to coordinate")
        if kind == "keygen":
            r.add_argument("--name", help="its name in the vaults file (default: the vault id)")
            r.add_argument("--kind", choices=("hot", "cold"), default="hot")
    a = sub.add_parser("approve", help="an approver signs a ceremony intent (timed) with their own key")
    a.add_argument("--ceremony", required=True)
    a.add_argument("--approver-id", required=True)
    a.add_argument("--key-file", required=True, help="hex Ed25519 seed of this approver (never leaves this machine)")


class VaultCliError(Exception):
    pass


def _read_json(path) -> dict:
    try:
        return json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise VaultCliError(f"{path}: {exc}") from None


def _policy_digest(args, cluster: dict, vault_id: str) -> str:
    from mpc.signer.policy import Policy, PolicyError

    path = args.policy or str(pathlib.Path(cluster["peers"][0]["dir"]) / "policy.toml")
    try:
        return Policy.load(path).vault_policy_digest(vault_id)
    except PolicyError as exc:
        raise VaultCliError(str(exc)) from None


def _vault(vaults: dict, name: str):
    from node.ports import Vault

    v = vaults.get(name)
    if v is None:
        raise VaultCliError(f"no vault {name!r} in the vaults file (have: {', '.join(sorted(vaults))})")
    return Vault(v["vault_id"], tuple(v["committee"]), int(v["threshold"]), bytes.fromhex(v["public_key"]), bytes.fromhex(v["chain_code"]))


def _write(path, d: dict) -> None:
    pathlib.Path(path).write_text(json.dumps(d, indent=2) + "\n")


def propose(args) -> dict:
    cluster = _read_json(args.cluster_file)
    committee = [p.strip() for p in getattr(args, "committee", "").split(",") if p.strip()]
    known = {p["name"] for p in cluster["peers"]}
    unknown = [p for p in committee if p not in known]
    if unknown:
        raise VaultCliError(f"not peers of this cluster: {', '.join(unknown)}")
    if args.vault_command == "reshare":
        vault = _vault(_read_json(args.vaults_file), args.vault)
        intent = cer.reshare_intent(vault.vault_id, vault.public_key, vault.committee, vault.threshold, committee,
                                    args.threshold, _policy_digest(args, cluster, vault.vault_id), args.lower_threshold)
        name = args.vault
    elif args.vault_command == "retire":
        vault = _vault(_read_json(args.vaults_file), args.vault)
        intent = cer.retire_intent(vault.vault_id, vault.public_key, vault.committee, vault.threshold,
                                   _policy_digest(args, cluster, vault.vault_id))
        name = args.vault
    else:
        intent = cer.keygen_intent(args.vault_id, committee, args.threshold, _policy_digest(args, cluster, args.vault_id))
        name = args.vault_id
    d = {"name": name, "intent": intent.canonical(), "approvals": []}
    _write(args.out, d)
    return d


def approve(args) -> dict:
    d = _read_json(args.ceremony)
    try:
        intent = cer.parse_ceremony_intent(d["intent"])
        key = SigningKey(bytes.fromhex(pathlib.Path(args.key_file).read_text().strip()))
    except (cer.CeremonyIntentInvalid, KeyError, OSError, ValueError) as exc:
        raise VaultCliError(f"cannot approve: {exc}") from None
    print(json.dumps({"approving": intent.canonical()}, indent=2), file=sys.stderr)  # what is signed is what is shown
    a = cer.approve_ceremony(intent, args.approver_id, key, time.time_ns() // 1_000_000)
    d["approvals"] = [x for x in d.get("approvals", []) if x.get("approver_id") != args.approver_id]
    d["approvals"].append({"approver_id": a.approver_id, "signature": a.signature.hex(), "approved_at_ms": a.approved_at_ms})
    _write(args.ceremony, d)
    return {"approver_id": a.approver_id, "approved_at_ms": a.approved_at_ms, "approvals": len(d["approvals"])}


def run_ceremony(args) -> dict:
    from mpc.client import ClusterClient
    from mpc.wire import requests as rq

    d = _read_json(args.ceremony)
    try:
        intent = cer.parse_ceremony_intent(d["intent"])
        approvals = rq.parse_approvals(d.get("approvals", []))
    except (cer.CeremonyIntentInvalid, rq.Refused, KeyError) as exc:
        raise VaultCliError(f"{args.ceremony}: {exc}") from None
    if intent.kind != args.vault_command:
        raise VaultCliError(f"{args.ceremony} is a {intent.kind}, not a {args.vault_command}")
    cluster = _read_json(args.cluster_file)
    vaults_path = pathlib.Path(args.vaults_file)
    vaults = _read_json(vaults_path) if vaults_path.exists() else {}
    client = ClusterClient.from_cluster_dir(cluster)
    if intent.kind == "retire":
        client.retire(_vault(vaults, d["name"]), args.coordinator, ceremony=intent, approvals=approvals)
        del vaults[d["name"]]
        _write(vaults_path, vaults)
        return {"vault": d["name"], "retired": intent.vault_id}
    if intent.kind == "reshare":
        old = _vault(vaults, d["name"])
        new = client.reshare(old, intent.new_committee, intent.new_threshold, args.coordinator, ceremony=intent, approvals=approvals)
        name, kind = d["name"], vaults[d["name"]].get("kind")
    else:
        new = client.keygen(intent.vault_id, intent.new_committee, intent.new_threshold, args.coordinator, ceremony=intent,
                            approvals=approvals)
        name, kind = args.name or intent.vault_id, args.kind
    entry = {"vault_id": new.vault_id, "committee": list(new.committee), "threshold": new.threshold,
             "public_key": new.public_key.hex(), "chain_code": new.chain_code.hex()}
    if kind:
        entry["kind"] = kind
    vaults[name] = entry
    _write(vaults_path, vaults)
    return {"vault": name, **entry}


def run(args) -> int:
    from node.ports import SigningRefused

    try:
        if args.vault_command == "approve":
            out = approve(args)
        elif args.step == "propose":
            out = propose(args)
        else:
            out = run_ceremony(args)
    except VaultCliError as exc:
        print(f"custody vault: {exc}", file=sys.stderr)
        return 2
    except SigningRefused as exc:
        print(f"custody vault: refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0
