"""A peer's own policy file, and the check every signing request passes before the peer joins.

The policy is this operator's, not the node's: the node's key, the approver keys, the approval
quorum per amount band and asset, an optional destination whitelist, and rate limits. Amounts
in the file are integers (or decimal strings, for wei) in base units.

    [node]
    public_key = "<hex Ed25519>"
    [approvers]
    alice = "<hex Ed25519>"
    [[bands]]                 # per asset; the first band whose amount_max >= the total applies
                              # (BTC, ETH: payments + fee_max; a token: its payments)
    asset = "BTC"
    amount_max = 100000000
    approvals_min = 1
    [[bands]]                 # a vault with bands of its own uses only those (e.g. the cold vault)
    vault = "cold"
    asset = "BTC"
    amount_max = 1000000000
    approvals_min = 2
    [vaults.cold]
    delay_s = 3600            # signs only delay_s after its quorum's signed approval times
    [approvals]               # optional: approval expiry
    age_s_max = 604800        # an intent's first version needs its quorum signed within this
    [own_destinations.hot]    # vaults this peer may pay as our own (refills): public keys only
    public_key = "<hex, 33-byte compressed group key>"
    chain_code = "<hex, 32 bytes>"
    [rate_limits]
    signatures_per_hour = 600
    [rate_limits.amount_per_hour]  # BTC and ETH count payments + fee_max; a token its amount
    BTC = "1000000000"
    [rate_limits.fee_per_hour]     # optional: the fee_max of token (ERC-20) intents, in wei
    ETH = "100000000000000000"
    [networks]                # what a signature can mean: the only networks signed for
    bitcoin = ["regtest"]     # (mainnet, testnet, signet, regtest)
    ethereum = ["1337"]       # chain ids, as strings
    [fees.bitcoin]            # this peer's own fee limits; a chain without them is refused
    fee_max = 1000000         # sat: the most an intent may allow, and the transaction may pay
    fee_rate_sat_vb_max = 2000
    [fees.ethereum]
    fee_max = "10000000000000000"         # wei: gas limit x maxFeePerGas <= intent fee_max <= this
    priority_fee_wei_max = "1000000000000" # maxPriorityFeePerGas
    [whitelist]               # optional; an asset listed here pays only to these destinations
    BTC = ["bcrt1q..."]
    [operators]               # optional: who runs each peer (default: every peer its own operator)
    peer-1 = "acme"
    [ceremonies]              # key generation and resharing: intents with approvals (issue 15)
    keygen_allowed = true     # false refuses every key generation on this peer
    reserves_allowed = true   # the proof-of-reserves message only (default true)
    approvals_min = 2         # at least this many, and never fewer than the vault's highest band
    delay_s = 0               # at least the vault's own delay_s ([vaults.<id>])
    threshold_min = 1         # the lowest threshold a reshare may leave
    n_of_n_allowed = false    # t + 1 = n: any single peer could veto every spend
    operators_min = 2         # distinct operators in a new committee
    [ceremonies.vaults.cold]  # per vault, over the [ceremonies] values
    threshold_min = 2

Ceremonies — a key generation or reshare request carries a CeremonyIntent (mpc/wire/ceremony.py)
and timed approvals of it. Every peer of the old quorum and of the new committee checks itself:
the intent names exactly this request (vault, public key, old and new committee and threshold),
the vault's policy digest is its own (`vault_policy_digest`: approvers, bands, delay,
whitelist, ceremony rules, operators), the floors hold (threshold_min; a lower threshold only
with the intent's `threshold_lowering`; no n-of-n unless allowed; at least operators_min
operators and none holding t + 1 peers), the approvals reach the ceremony quorum (the highest
of approvals_min and the vault's bands, at least 1) and the delay (the highest of the
ceremony's and the vault's) has passed since the quorum's signed times. `reshare_allowed`, the
old all-or-nothing switch, is ignored with a start-up warning (`Policy.warnings`): resharing is
always possible with approvals, never without.

Cold vault delay — what a peer can verify. Approvals of a vault with `delay_s` must be timed:
the approver signs its own clock's time with the intent (node/ports.py `approval_message`), so
the time is the approver's word, not the node's. The peer takes the time at which the quorum
was reached (the k-th earliest signed time of the k approvals it needs) and refuses before
that time + delay_s by its own clock (`delay_not_elapsed`). A compromised node therefore cannot
shorten the delay; approvers backdating their own signatures could (they are the quorum
anyway). Untimed approvals do not count toward a delayed vault's quorum; a time further ahead
of the peer's clock than APPROVAL_CLOCK_SKEW_MS_MAX is refused.

Own destinations — a refill (cold -> hot) pays the hot vault's wallet, whose address the cold
vault's keys cannot derive. The intent names the destination vault (`own_destination_vault`)
and paths; the peer derives the addresses from the public keys in its own `[own_destinations]`
(never from the request) and refuses a vault it does not list (`own_destination_vault_unknown`).
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from mpc.signer.records import IntentVersion, RecordsError, SignerRecords
from mpc.wire import ceremony as cer
from mpc.wire import requests as rq
from mpc.wire.requests import Refused
from node import limits
from node.ports import FEE_ASSETS, InputUnproven, IntentChecker, IntentMismatch, NonceUnproven, SigningDigest, VaultKeys
from proofs import assets


class PolicyError(ValueError):
    """The policy file is unusable; the peer refuses to start."""


def _amount(v, where: str) -> int:
    if isinstance(v, bool):
        raise PolicyError(f"{where}: amount must be an integer")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.isdigit():
        n = int(v)
    else:
        raise PolicyError(f"{where}: amount must be an integer or a decimal string, got {v!r}")
    if n < 0:
        raise PolicyError(f"{where}: amount must be >= 0")
    return n


def _key(v, where: str) -> bytes:
    try:
        b = bytes.fromhex(v)
    except (TypeError, ValueError):
        raise PolicyError(f"{where}: not hex") from None
    if len(b) != 32:
        raise PolicyError(f"{where}: an Ed25519 public key is 32 bytes")
    return b


@dataclass(frozen=True)
class Band:
    asset: str
    amount_max: int
    approvals_min: int
    vault: str = ""  # "" applies to every vault without bands of its own


@dataclass(frozen=True)
class FeeLimits:
    """One chain's fee limits in this peer's policy, in the chain's own units (sat, wei)."""

    fee_max: int
    fee_rate_sat_vb_max: int = 0  # bitcoin
    priority_fee_wei_max: int = 0  # ethereum


_FEE_FIELDS = {"bitcoin": ("fee_max", "fee_rate_sat_vb_max"), "ethereum": ("fee_max", "priority_fee_wei_max")}


def _fee_limits(chain: str, d) -> FeeLimits:
    where = f"fees.{chain}"
    if chain not in _FEE_FIELDS:
        raise PolicyError(f"{where}: unknown chain (one of {', '.join(_FEE_FIELDS)})")
    if not isinstance(d, dict) or set(d) != set(_FEE_FIELDS[chain]):
        raise PolicyError(f"{where}: exactly {', '.join(_FEE_FIELDS[chain])} (no defaults)")
    values = {k: _amount(v, f"{where}.{k}") for k, v in d.items()}
    if not all(values.values()):
        raise PolicyError(f"{where}: every limit must be > 0")
    return FeeLimits(**values)


@dataclass(frozen=True)
class OwnVaultKeys:
    """A vault this peer may pay as our own: its group public key and chain code (public
    derivation only, chains.keys.Bip32VaultKeys)."""

    vault_id: str
    public_key: bytes
    chain_code: bytes

    def keys(self):
        from chains.keys import Bip32VaultKeys

        return Bip32VaultKeys(self.public_key, self.chain_code)


def _own_vault(vault_id: str, d, where: str) -> OwnVaultKeys:
    import coincurve

    if not isinstance(d, dict):
        raise PolicyError(f"{where}: a table with public_key and chain_code")
    try:
        pk, cc = bytes.fromhex(d["public_key"]), bytes.fromhex(d["chain_code"])
    except (KeyError, TypeError, ValueError):
        raise PolicyError(f"{where}: public_key and chain_code in hex are required") from None
    if len(pk) != 33 or len(cc) != 32:
        raise PolicyError(f"{where}: public_key is 33 bytes (compressed), chain_code 32")
    try:
        coincurve.PublicKey(pk)
    except ValueError:
        raise PolicyError(f"{where}: public_key is not a secp256k1 point") from None
    return OwnVaultKeys(vault_id, pk, cc)


@dataclass(frozen=True)
class CeremonyRules:
    """One vault's floors for key generation and resharing ([ceremonies], [ceremonies.vaults.<id>])."""

    approvals_min: int = 1
    delay_s: int = 0
    threshold_min: int = 1
    n_of_n_allowed: bool = False
    operators_min: int = 2

    def canonical(self) -> dict:
        return {"approvals_min": self.approvals_min, "delay_s": self.delay_s, "threshold_min": self.threshold_min,
                "n_of_n_allowed": self.n_of_n_allowed, "operators_min": self.operators_min}


_RULE_INTS = {"approvals_min": (1, limits.CLUSTER_APPROVALS_MAX), "delay_s": (0, limits.VAULT_DELAY_S_MAX),
              "threshold_min": (1, limits.MPC_PARTIES_MAX), "operators_min": (1, limits.MPC_PARTIES_MAX)}
_CEREMONY_SWITCHES = ("keygen_allowed", "reshare_allowed", "reserves_allowed", "vaults")


def _rules(d: dict, base: CeremonyRules, where: str, approvers: int) -> CeremonyRules:
    values = base.canonical()
    for k, v in d.items():
        if k == "n_of_n_allowed":
            if not isinstance(v, bool):
                raise PolicyError(f"{where}.n_of_n_allowed: true or false")
        elif k in _RULE_INTS:
            lo, hi = _RULE_INTS[k]
            if type(v) is not int or not lo <= v <= hi:
                raise PolicyError(f"{where}.{k} must be an integer {lo}..{hi}")
        else:
            raise PolicyError(f"{where}.{k}: unknown (one of n_of_n_allowed, {', '.join(_RULE_INTS)})")
        values[k] = v
    if values["approvals_min"] > approvers:
        raise PolicyError(f"{where}.approvals_min must be at most {approvers} (registered approvers)")
    return CeremonyRules(**values)


def _approval_age_s_max(d, delays: dict[str, int]) -> int:
    """[approvals] age_s_max: above every vault's delay by APPROVAL_AGE_MARGIN_S (a delayed
    withdrawal still has time to sign) and below the records' intent retention (an intent is
    never forgotten while its approvals could still sign it again)."""
    if not isinstance(d, dict) or not set(d) <= {"age_s_max"}:
        raise PolicyError("approvals: a table with age_s_max only")
    age = d.get("age_s_max", 0)
    if type(age) is not int or age < 0:
        raise PolicyError("approvals.age_s_max must be an integer of seconds")
    if not age:
        return 0
    if age * 1000 >= limits.RECORDS_INTENT_KEPT_MS:
        raise PolicyError(f"approvals.age_s_max must be below the records' intent retention ({limits.RECORDS_INTENT_KEPT_MS // 1000} s)")
    for vault, delay_s in delays.items():
        if age < delay_s + limits.APPROVAL_AGE_MARGIN_S:
            raise PolicyError(f"approvals.age_s_max must be at least vaults.{vault}.delay_s + {limits.APPROVAL_AGE_MARGIN_S} s")
    return age


@dataclass
class Policy:
    node_public_key: bytes
    approvers: dict[str, bytes]
    bands: list[Band]
    signatures_per_hour: int
    amount_per_hour: dict[str, int]
    whitelist: dict[str, frozenset[str]] = field(default_factory=dict)
    keygen_allowed: bool = True
    # The reserves message (`por-mst/1 reserves <sid> <root>`) cannot move funds: no transaction
    # or other chain message has that form, so a peer signing it only attests to the key; on by
    # default, off with `[ceremonies] reserves_allowed = false`. It still counts toward rate limits.
    reserves_allowed: bool = True
    vault_delays_s: dict[str, int] = field(default_factory=dict)
    own_destinations: dict[str, OwnVaultKeys] = field(default_factory=dict)
    fees: dict[str, FeeLimits] = field(default_factory=dict)
    # What a signature can mean: the networks this peer signs transactions for, per chain.
    networks: dict[str, frozenset[str]] = field(default_factory=dict)
    ceremony_rules: CeremonyRules = field(default_factory=CeremonyRules)
    vault_ceremony_rules: dict[str, CeremonyRules] = field(default_factory=dict)
    operators: dict[str, str] = field(default_factory=dict)  # peer name -> operator
    warnings: tuple[str, ...] = ()  # logged at start (e.g. a retired key that is ignored)
    # Rolling-hour budget of token intents' fee_max, per fee asset (ETH): a token's own amount
    # limit counts token units, so its fees are counted here.
    fee_per_hour: dict[str, int] = field(default_factory=dict)
    # Approval expiry: an intent this peer has not joined yet needs its quorum of approvals
    # signed (timed) within this many seconds; 0: approvals do not expire.
    approval_age_s_max: int = 0

    @classmethod
    def load(cls, path) -> "Policy":
        try:
            with open(path, "rb") as f:
                d = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"policy file {path}: {exc}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict) -> "Policy":
        try:
            node_pk = _key(d["node"]["public_key"], "node.public_key")
            approvers = {str(k): _key(v, f"approvers.{k}") for k, v in d.get("approvers", {}).items()}
            bands = []
            for i, b in enumerate(d.get("bands", [])):
                n = b["approvals_min"]
                if not isinstance(n, int) or n < 0 or n > len(approvers):
                    raise PolicyError(f"bands[{i}].approvals_min must be 0..{len(approvers)} (registered approvers)")
                vault = b.get("vault", "")
                if not isinstance(vault, str):
                    raise PolicyError(f"bands[{i}].vault must be a vault id")
                bands.append(Band(str(b["asset"]), _amount(b["amount_max"], f"bands[{i}].amount_max"), n, vault))
            delays = {}
            for vid, v in d.get("vaults", {}).items():
                delay = v.get("delay_s", 0) if isinstance(v, dict) else None
                if not isinstance(delay, int) or isinstance(delay, bool) or not 0 <= delay <= limits.VAULT_DELAY_S_MAX:
                    raise PolicyError(f"vaults.{vid}.delay_s must be an integer 0..{limits.VAULT_DELAY_S_MAX}")
                delays[str(vid)] = delay
            own = {str(vid): _own_vault(str(vid), v, f"own_destinations.{vid}") for vid, v in d.get("own_destinations", {}).items()}
            rl = d.get("rate_limits", {})
            sph = rl.get("signatures_per_hour")
            if not isinstance(sph, int) or isinstance(sph, bool) or not 0 < sph <= limits.CLUSTER_RATE_EVENTS_MAX:
                raise PolicyError(f"rate_limits.signatures_per_hour must be an integer 1..{limits.CLUSTER_RATE_EVENTS_MAX} (no default)")
            aph = {str(k): _amount(v, f"rate_limits.amount_per_hour.{k}") for k, v in rl.get("amount_per_hour", {}).items()}
            fph = {str(k): _amount(v, f"rate_limits.fee_per_hour.{k}") for k, v in rl.get("fee_per_hour", {}).items()}
            if not set(fph) <= set(FEE_ASSETS.values()):
                raise PolicyError(f"rate_limits.fee_per_hour: fee assets only ({', '.join(FEE_ASSETS.values())})")
            wl = {str(k): frozenset(map(str, v)) for k, v in d.get("whitelist", {}).items()}
            cer = d.get("ceremonies", {})
            age_s_max = _approval_age_s_max(d.get("approvals", {}), delays)
            fees = {str(chain): _fee_limits(str(chain), v) for chain, v in d.get("fees", {}).items()}
            networks = {}
            for chain, v in d.get("networks", {}).items():
                if chain not in _FEE_FIELDS or not isinstance(v, list) or not v or not all(isinstance(n, str) and n for n in v):
                    raise PolicyError(f"networks.{chain}: a list of network names of a known chain ({', '.join(_FEE_FIELDS)})")
                networks[str(chain)] = frozenset(v)
            if not isinstance(cer, dict) or not isinstance(cer.get("vaults", {}), dict):
                raise PolicyError("ceremonies: a table (with optional [ceremonies.vaults.<id>] tables)")
            rules = _rules({k: v for k, v in cer.items() if k not in _CEREMONY_SWITCHES}, CeremonyRules(), "ceremonies",
                           len(approvers))
            vault_rules = {}
            for vid, v in cer.get("vaults", {}).items():
                if not isinstance(v, dict):
                    raise PolicyError(f"ceremonies.vaults.{vid}: a table")
                vault_rules[str(vid)] = _rules(v, rules, f"ceremonies.vaults.{vid}", len(approvers))
            operators = d.get("operators", {})
            if not isinstance(operators, dict) or not all(isinstance(v, str) and v for v in operators.values()):
                raise PolicyError("operators: peer name = operator name")
            warnings = []
            if "reshare_allowed" in cer:
                warnings.append("ceremonies.reshare_allowed is ignored: a reshare needs the vault's approvals "
                                "(mpc/wire/ceremony.py), never a switch; remove the key")
        except KeyError as exc:
            raise PolicyError(f"policy: missing {exc}") from None
        bands.sort(key=lambda b: (b.vault, b.asset, b.amount_max))
        return cls(node_pk, approvers, bands, sph, aph, wl, bool(cer.get("keygen_allowed", False)),
                   bool(cer.get("reserves_allowed", True)), delays, own, fees, networks,
                   rules, vault_rules, {str(k): str(v) for k, v in operators.items()}, tuple(warnings),
                   fee_per_hour=fph, approval_age_s_max=age_s_max)

    # ------------------------------------------------------------------ ceremonies
    def rules_for(self, vault_id: str) -> CeremonyRules:
        return self.vault_ceremony_rules.get(vault_id, self.ceremony_rules)

    def _vault_bands(self, vault_id: str) -> list[Band]:
        own = any(b.vault == vault_id for b in self.bands)
        return [b for b in self.bands if b.vault == (vault_id if own else "")]

    def ceremony_quorum(self, vault_id: str) -> int:
        """Approvals a key ceremony of the vault needs: never fewer than its largest payment."""
        return max([1, self.rules_for(vault_id).approvals_min, *(b.approvals_min for b in self._vault_bands(vault_id))])

    def ceremony_delay_s(self, vault_id: str) -> int:
        return max(self.rules_for(vault_id).delay_s, self.vault_delays_s.get(vault_id, 0))

    def vault_policy_digest(self, vault_id: str) -> str:
        """What the approvals of a key ceremony name: the policy this peer enforces for the vault
        (approvers, bands, delay, whitelist, ceremony rules, operators), hex SHA-256 of its
        RFC 8785 bytes. A peer whose own differs refuses to join (vault_policy_mismatch)."""
        d = {"vault_id": vault_id,
             "approvers": {k: v.hex() for k, v in sorted(self.approvers.items())},
             "bands": [[b.asset, str(b.amount_max), b.approvals_min] for b in self._vault_bands(vault_id)],
             "delay_s": self.vault_delays_s.get(vault_id, 0),
             "whitelist": {k: sorted(v) for k, v in sorted(self.whitelist.items())},
             "ceremony": self.rules_for(vault_id).canonical(),
             "operators": dict(sorted(self.operators.items()))}
        return hashlib.sha256(rfc8785.dumps(d)).hexdigest()

    def quorum(self, asset: str, amount: int, vault_id: str = "") -> int:
        """Approvals needed: the vault's own bands when it has any, else the shared ones."""
        own = any(b.vault == vault_id for b in self.bands) if vault_id else False
        bands = [b for b in self.bands if b.asset == asset and b.vault == (vault_id if own else "")]
        if not bands:
            raise Refused("asset_not_allowed", asset)
        for b in bands:
            if amount <= b.amount_max:
                return b.approvals_min
        raise Refused("amount_exceeds_policy", f"{amount} > {bands[-1].amount_max} {asset}")


@dataclass(frozen=True)
class VerifiedSign:
    request_id: str
    vault_id: str
    digests: tuple[SigningDigest, ...]
    asset: str
    amount: int
    opaque: bool
    # The transaction version this request signs for its intent (spend-once); None for opaque
    # digests and the reserves message, which pay nothing.
    version: IntentVersion | None = None


class RequestVerifier:
    """Checks one node-signed request against this peer's own policy. Refusals in precedence
    order: request_too_large, node_signature_invalid, request_malformed, request_expired,
    wrong_kind, vault_unknown, opaque_digest_refused, intent_vault_mismatch,
    transaction_chain_mismatch, network_not_allowed, approval_signature_invalid, approval_time_out_of_range,
    asset_not_allowed, amount_exceeds_policy, approvals_below_quorum, delay_not_elapsed, approvals_expired,
    destination_not_whitelisted, own_destination_vault_unknown, chain_not_supported,
    the unproven inputs (prev_txs_too_large, prev_tx_too_large, prev_tx_malformed,
    prev_tx_duplicate, prev_tx_missing, prev_tx_mismatch, input_amount_mismatch, prev_tx_unused:
    node/ports.py InputUnproven; Ethereum: nonce_evidence_missing, nonce_evidence_invalid,
    nonce_beyond_window, NonceUnproven), transaction_does_not_match_intent, fee_limits_not_configured, fee_exceeds_policy,
    fee_rate_exceeds_policy, priority_fee_exceeds_policy, too_many_digests, intent_already_signed,
    intent_versions_exceeded, intent_records_full, request_id_reused, rate_limit_exceeded.

    Spend-once (intent_already_signed, mpc/signer/records.py): another transaction for an
    intent this peer already joined is signed only if it conflicts with every earlier version
    (IntentChecker.spends); this check reads the records, Join records the version
    (Preparer.sign) before the peer takes part.

    Each request that passes is counted in the peer's durable records (mpc/signer/records.py)
    against its rolling-hour limits, by wall-clock time, so a restart does not reset them; a
    retry (same request_id, same body but for created_at_ms) is free."""

    def __init__(self, policy: Policy, environment: str, checkers: dict[str, IntentChecker], records: SignerRecords,
                 clock_ms=rq.now_ms):
        assert environment in ("production", "test"), environment
        self.policy = policy
        self.environment = environment
        self.checkers = dict(checkers)
        self.records = records
        self.clock_ms = clock_ms

    def _admit(self, body: dict, asset: str, amount: int, fee_asset: str = "", fee: int = 0) -> None:
        """request_id_reused, rate_limit_exceeded, records_unwritable (the disk failed: this
        peer refuses every request until an operator restarts it); durable when it returns.
        `fee` of `fee_asset`: a token intent's fee_max, against [rate_limits.fee_per_hour]."""
        try:
            self.records.admit(body["request_id"], rq.request_digest(body), asset, amount, self.policy.signatures_per_hour,
                               self.policy.amount_per_hour, self.clock_ms(), fee_asset, fee, self.policy.fee_per_hour)
        except RecordsError as exc:
            raise Refused("records_unwritable", str(exc)) from None

    def authenticate(self, raw: bytes, signature: bytes, kind: str) -> dict:
        if len(raw) > limits.CLUSTER_REQUEST_BYTES_MAX:
            raise Refused("request_too_large")
        rq.verify_node_signature(raw, signature, self.policy.node_public_key)
        body = rq.parse(raw)
        if abs(self.clock_ms() - body["created_at_ms"]) > limits.CLUSTER_REQUEST_AGE_MS_MAX:
            raise Refused("request_expired")
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if body["kind"] not in kinds:
            raise Refused("wrong_kind", f"{body['kind']} not in {kinds}")
        return body

    def verify_sign(self, raw: bytes, signature: bytes, vault_keys: VaultKeys | None) -> VerifiedSign:
        """A withdrawal signing request, or a `reserves` request (sent over the same Sign RPC)."""
        body = self.authenticate(raw, signature, ("sign", "reserves"))
        if vault_keys is None:
            raise Refused("vault_unknown", body["vault_id"])
        if body["kind"] == "reserves":
            return self._verify_reserves(body)
        opaque = rq.parse_opaque(body.get("opaque_digests", []))
        if opaque:
            # Tests and benchmarks only: production configs cannot reach this (config.py refuses
            # environment = "test" unless asked for explicitly, and never with production keys).
            if self.environment != "test":
                raise Refused("opaque_digest_refused")
            if len(opaque) > limits.CLUSTER_DIGESTS_PER_REQUEST_MAX:
                raise Refused("too_many_digests")
            self._admit(body, "", 0)  # counted and remembered like any request (it moves no amount)
            return VerifiedSign(body["request_id"], body["vault_id"], tuple(opaque), "", 0, True)
        if body.get("intent") is None or body.get("transaction") is None:
            raise Refused("request_malformed", "a signing request carries its transaction and intent")
        intent = rq.parse_intent(body["intent"])
        tx = rq.parse_transaction(body["transaction"])
        approvals = rq.parse_approvals(body.get("approvals", []))
        if len(approvals) > limits.CLUSTER_APPROVALS_MAX:
            raise Refused("request_malformed", "too many approvals")
        if intent.vault_id != body["vault_id"]:
            raise Refused("intent_vault_mismatch")
        if (tx.chain, tx.network) != (intent.chain, intent.network):
            raise Refused("transaction_chain_mismatch")
        if intent.network not in self.policy.networks.get(intent.chain, ()):
            raise Refused("network_not_allowed", f"{intent.chain} {intent.network!r}")
        approvers: dict[str, int | None] = {}
        now_ms = self.clock_ms()
        for a in approvals:
            pk = self.policy.approvers.get(a.approver_id)
            if pk is None:
                continue  # not an approver of this peer: does not count
            try:
                VerifyKey(pk).verify(a.message(intent), a.signature)
            except (BadSignatureError, ValueError):
                raise Refused("approval_signature_invalid", a.approver_id) from None
            if a.approved_at_ms is not None and a.approved_at_ms > now_ms + limits.APPROVAL_CLOCK_SKEW_MS_MAX:
                raise Refused("approval_time_out_of_range", f"{a.approver_id}: {a.approved_at_ms - now_ms} ms ahead")
            if a.approver_id in approvers:
                # Counted once; for the delay its latest signed time (or none) is the one that holds.
                prev = approvers[a.approver_id]
                approvers[a.approver_id] = None if prev is None or a.approved_at_ms is None else max(prev, a.approved_at_ms)
            else:
                approvers[a.approver_id] = a.approved_at_ms
        # BTC and ETH: the payments plus fee_max, what the transaction can take out (issue 14)
        amount = intent.band_amount()
        needed = self.policy.quorum(intent.asset, amount, intent.vault_id)
        delay_s = self.policy.vault_delays_s.get(intent.vault_id, 0)
        if delay_s:
            # Only signed times anchor the delay; a delayed vault needs at least one approval.
            times = sorted(t for t in approvers.values() if t is not None)
            k = max(needed, 1)
            if len(times) < k:
                raise Refused("approvals_below_quorum", f"{len(times)} timed < {k} (vault {intent.vault_id} has a delay)")
            remaining_ms = times[k - 1] + delay_s * 1000 - now_ms
            if remaining_ms > 0:
                raise Refused("delay_not_elapsed", f"{remaining_ms} ms left of {delay_s} s after the quorum")
        elif len(approvers) < needed:
            raise Refused("approvals_below_quorum", f"{len(approvers)} < {needed}")
        age_s_max = self.policy.approval_age_s_max
        if age_s_max and needed and not self.records.intent_known(intent.intent_id, now_ms):
            # Expiry holds for an intent's first version only: its fee bumps (versions that
            # conflict with it, spend-once) still sign when a fee spike outlasts the age.
            fresh = [t for t in approvers.values() if t is not None and t >= now_ms - age_s_max * 1000]
            if len(fresh) < needed:
                raise Refused("approvals_expired", f"{len(fresh)} of {needed} approvals signed within {age_s_max} s")
        allowed = self.policy.whitelist.get(intent.asset)
        if allowed is not None and intent.kind == "withdrawal":
            for p in intent.payments:
                if p.destination not in allowed:
                    raise Refused("destination_not_whitelisted", p.destination)
        destination_keys = None
        if intent.own_destination_vault and intent.own_destination_vault != intent.vault_id:
            known = self.policy.own_destinations.get(intent.own_destination_vault)
            if known is None:
                raise Refused("own_destination_vault_unknown", intent.own_destination_vault)
            destination_keys = known.keys()
        checker = self.checkers.get(tx.chain)
        if checker is None:
            raise Refused("chain_not_supported", tx.chain)
        try:
            digests = checker.check(tx, intent, vault_keys, destination_keys)
        except (InputUnproven, NonceUnproven) as exc:  # issue 14: an input amount or nonce this peer cannot prove itself
            raise Refused(exc.reason, exc.detail) from None
        except IntentMismatch as exc:
            raise Refused("transaction_does_not_match_intent", exc.reason) from None
        except Exception as exc:  # the checker parses untrusted bytes: any failure is a refusal
            raise Refused("transaction_does_not_match_intent", f"unparseable: {type(exc).__name__}") from None
        self._check_fees(checker, tx, intent)
        if not digests or len(digests) > limits.CLUSTER_DIGESTS_PER_REQUEST_MAX:
            raise Refused("too_many_digests", str(len(digests)))
        for d in digests:
            assert len(d.digest) == 32, "checker returned a digest that is not 32 bytes"
        try:
            spends = checker.spends(tx, vault_keys)
        except IntentMismatch as exc:
            raise Refused("transaction_does_not_match_intent", exc.reason) from None
        assert spends, "a transaction the checker accepted spends something"
        version = IntentVersion(intent.intent_id, intent.vault_id, intent.chain, frozenset(spends),
                                hashlib.sha256(tx.payload).hexdigest())
        self.records.check_intent(version)
        fee_asset = FEE_ASSETS.get(intent.chain, "")
        token_fee = intent.fee_max if intent.asset != fee_asset else 0  # the fee asset's fee is in `amount`
        self._admit(body, intent.asset, amount, fee_asset if token_fee else "", token_fee)
        return VerifiedSign(body["request_id"], body["vault_id"], tuple(digests), intent.asset, amount, False, version)

    def _check_fees(self, checker, tx, intent) -> None:
        """This peer's own fee limits, against the intent's fee_max and what the transaction's
        own bytes can pay (the checker already held the fee within the intent's fee_max).
        Refusals: fee_limits_not_configured, fee_exceeds_policy, fee_rate_exceeds_policy,
        priority_fee_exceeds_policy."""
        fees = self.policy.fees.get(tx.chain)
        if fees is None:
            raise Refused("fee_limits_not_configured", tx.chain)
        try:
            terms = checker.fee_terms(tx)
        except Exception as exc:  # untrusted bytes, though check() already parsed them
            raise Refused("transaction_does_not_match_intent", f"fee unparseable: {type(exc).__name__}") from None
        if intent.fee_max > fees.fee_max or terms.fee > fees.fee_max:
            raise Refused("fee_exceeds_policy", f"fee_max {intent.fee_max}, transaction {terms.fee} > {fees.fee_max}")
        if fees.fee_rate_sat_vb_max:
            if terms.vsize <= 0:
                raise Refused("fee_rate_exceeds_policy", "no size to rate the fee by")
            rate = -(-terms.fee // terms.vsize)  # rounded up: sat/vB
            if rate > fees.fee_rate_sat_vb_max:
                raise Refused("fee_rate_exceeds_policy", f"{rate} > {fees.fee_rate_sat_vb_max} sat/vB")
        if fees.priority_fee_wei_max and terms.priority_fee_per_gas > fees.priority_fee_wei_max:
            raise Refused("priority_fee_exceeds_policy", f"{terms.priority_fee_per_gas} > {fees.priority_fee_wei_max} wei")

    def _verify_reserves(self, body: dict) -> VerifiedSign:
        """Refusals: reserves_not_allowed, request_malformed, chain_not_supported,
        message_not_reserves, too_many_digests, request_id_reused, rate_limit_exceeded. The
        digest is computed here from the message, never taken from the request."""
        if not self.policy.reserves_allowed:
            raise Refused("reserves_not_allowed")
        chain, message, paths = body.get("chain"), body.get("message"), body.get("paths")
        if chain not in ("bitcoin", "ethereum"):
            raise Refused("chain_not_supported", repr(chain)[:40])
        if not isinstance(message, str):
            raise Refused("request_malformed", "message must be a string")
        if not isinstance(paths, list) or not paths:
            raise Refused("request_malformed", "paths must be a non-empty list")
        if len(paths) > limits.CLUSTER_DIGESTS_PER_REQUEST_MAX:
            raise Refused("too_many_digests", str(len(paths)))
        parsed = [rq._path(p) for p in paths]
        try:
            _, _, digest = assets.reserves_request_digest(chain, message)
        except assets.AssetsInvalid as exc:
            raise Refused("message_not_reserves", exc.detail) from None
        # Counted as one signature request; it moves no amount.
        self._admit(body, "", 0)
        return VerifiedSign(body["request_id"], body["vault_id"], tuple(SigningDigest(p, digest) for p in parsed), "", 0, False)

    # ------------------------------------------------------------------ key ceremonies
    def verify_ceremony(self, body: dict, request: cer.CeremonyIntent) -> cer.CeremonyIntent:
        """A key generation or reshare request, already authenticated, with its fields parsed by
        the caller into `request` (what this request would do, as a CeremonyIntent without id or
        digest). Refusals in precedence order: ceremony_not_approved, request_malformed, ceremony_intent_mismatch,
        vault_policy_mismatch, threshold_below_minimum, threshold_lowering_not_consented,
        n_of_n_not_allowed, committee_operators_too_few, operator_holds_signing_quorum,
        approval_signature_invalid, approval_time_out_of_range, approvals_expired,
        approvals_below_quorum, delay_not_elapsed, request_id_reused, rate_limit_exceeded.
        Durable when it returns."""
        if body.get("ceremony") is None:
            raise Refused("ceremony_not_approved", "the request carries no approved ceremony intent")
        try:
            intent = cer.parse_ceremony_intent(body.get("ceremony"))
        except cer.CeremonyIntentInvalid as exc:
            raise Refused("request_malformed", str(exc)) from None
        approvals = rq.parse_approvals(body.get("approvals", []))
        if len(approvals) > limits.CLUSTER_APPROVALS_MAX:
            raise Refused("request_malformed", "too many approvals")
        mine = (request.vault_id, request.kind, request.old_committee, request.old_threshold, request.new_committee,
                request.new_threshold, request.public_key)
        named = (intent.vault_id, intent.kind, intent.old_committee, intent.old_threshold, intent.new_committee,
                 intent.new_threshold, intent.public_key)
        if mine != named:
            diff = [f for f, a, b in zip(("vault", "kind", "old_committee", "old_threshold", "new_committee", "new_threshold",
                                          "public_key"), mine, named) if a != b]
            raise Refused("ceremony_intent_mismatch", f"the approved intent names another {', '.join(diff)}")
        vault_id = intent.vault_id
        if intent.policy_digest != self.policy.vault_policy_digest(vault_id):
            raise Refused("vault_policy_mismatch", f"the approvals name another policy for vault {vault_id} than the one this peer enforces")
        if intent.kind == "retire":
            self._check_ceremony_approvals(intent, approvals)  # no new committee: no floors
            self._admit(body, "", 0)
            return intent
        rules = self.policy.rules_for(vault_id)
        n, t = len(intent.new_committee), intent.new_threshold
        if t < rules.threshold_min:
            raise Refused("threshold_below_minimum", f"{t} < {rules.threshold_min}")
        if intent.kind == "reshare" and t < intent.old_threshold and not intent.threshold_lowering:
            raise Refused("threshold_lowering_not_consented", f"{intent.old_threshold} -> {t}")
        if t + 1 >= n and not rules.n_of_n_allowed:
            raise Refused("n_of_n_not_allowed", f"{t + 1}-of-{n}: any one peer could refuse every spend")
        per_operator: dict[str, int] = {}
        for p in intent.new_committee:
            op = self.policy.operators.get(p, p)
            per_operator[op] = per_operator.get(op, 0) + 1
        if len(per_operator) < rules.operators_min:
            raise Refused("committee_operators_too_few", f"{len(per_operator)} < {rules.operators_min}")
        big = [op for op, k in per_operator.items() if k > t]
        if big:
            raise Refused("operator_holds_signing_quorum", f"{big[0]} runs {per_operator[big[0]]} of {n} peers, t = {t}")
        self._check_ceremony_approvals(intent, approvals)
        self._admit(body, "", 0)
        return intent

    def _check_ceremony_approvals(self, intent: cer.CeremonyIntent, approvals) -> None:
        """Timed approvals only: the quorum's k-th earliest signed time + the delay, by this peer's clock."""
        now_ms = self.clock_ms()
        times: dict[str, int] = {}
        for a in approvals:
            pk = self.policy.approvers.get(a.approver_id)
            if pk is None or a.approved_at_ms is None:
                continue  # not this peer's approver, or untimed: does not count
            try:
                VerifyKey(pk).verify(cer.ceremony_message(intent, a.approved_at_ms), a.signature)
            except (BadSignatureError, ValueError):
                raise Refused("approval_signature_invalid", a.approver_id) from None
            if a.approved_at_ms > now_ms + limits.APPROVAL_CLOCK_SKEW_MS_MAX:
                raise Refused("approval_time_out_of_range", f"{a.approver_id}: {a.approved_at_ms - now_ms} ms ahead")
            times[a.approver_id] = max(times.get(a.approver_id, 0), a.approved_at_ms)
        needed = self.policy.ceremony_quorum(intent.vault_id)
        delay_s = self.policy.ceremony_delay_s(intent.vault_id)
        oldest_ms = now_ms - delay_s * 1000 - limits.CEREMONY_APPROVAL_VALID_MS
        fresh = {a: t for a, t in times.items() if t >= oldest_ms}
        if len(fresh) < needed <= len(times):
            raise Refused("approvals_expired", f"{len(times) - len(fresh)} signed before the approval window")
        times = fresh
        if len(times) < needed:
            raise Refused("approvals_below_quorum", f"{len(times)} < {needed} (key ceremony of vault {intent.vault_id})")
        if delay_s:
            remaining_ms = sorted(times.values())[needed - 1] + delay_s * 1000 - now_ms
            if remaining_ms > 0:
                raise Refused("delay_not_elapsed", f"{remaining_ms} ms left of {delay_s} s after the quorum")
