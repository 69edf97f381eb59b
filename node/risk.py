"""Risk screening as declarative, versioned policy, and the approval quorum it names.

The policy is one TOML document. It is stored versioned in the database (`risk_policies`): a
change is proposed, signed by RISK_POLICY_APPROVALS_MIN registered approvers (Ed25519 over the
SHA-256 of its bytes) and only then becomes active; each step is journaled (`Store.write`).

    version = 2
    [approvers]                       # staff approvers' Ed25519 public keys (hex)
    approver-1 = "…"
    [fee_max]                         # the most one transaction may pay, per chain (base units)
    bitcoin = "100000"
    ethereum = "5000000000000000"
    [kyc_tiers.basic.BTC]             # limits per KYC tier and asset (base units)
    per_withdrawal_max = "100000000"
    day_max = "200000000"             # rolling 24 h
    month_max = "1000000000"          # rolling 30 days
    [velocity]
    exceeded = "hold"                 # hold | deny
    [whitelist]
    required = true                   # destinations must be whitelisted
    timelock_s = 86400                # a newly added address is held until this has passed
    [lists]
    sanctions = ["/etc/custody/ofac.txt"]   # one address per line; '#' starts a comment
    block = ["/etc/custody/blocked.txt"]
    [anomaly]
    history_min = 3                   # scored once the customer has this many withdrawals
    hold_multiple = 10                # amount above 10x their median: hold for review
    [[vaults]]                        # approval quorum per vault and amount band
    id = "hot"
    kind = "hot"                      # hot | cold
    delay_s = 0                       # cold vaults: a delay after the quorum
    bands = [ { asset = "BTC", amount_max = "10000000", approvals_min = 0 },
              { asset = "BTC", amount_max = "5000000000", approvals_min = 2 } ]
    [rebalance.BTC]                   # hot/cold water marks (base units)
    hot_vault = "hot"
    cold_vault = "cold"
    high_water = "300000000"
    target = "200000000"
    low_water = "50000000"

`screen()` is a pure function of the policy, the customer's profile and history, and the
destination: the outcome (allow / hold / deny) with every reason found, in precedence order.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from node import limits

ALLOW = "allow"
HOLD = "hold"
DENY = "deny"

# Reasons, in precedence order. The first four block (status `blocked`); other denials reject.
BLOCKING = ("account_frozen", "destination_sanctioned", "destination_blocked")
REASONS = (
    "account_frozen",
    "destination_sanctioned",
    "destination_blocked",
    "kyc_tier_unknown",
    "asset_not_allowed_for_tier",
    "amount_exceeds_tier_limit",
    "address_not_whitelisted",
    "velocity_day_exceeded",
    "velocity_month_exceeded",
    "address_in_timelock",
    "amount_anomalous",
)


class PolicyInvalid(ValueError):
    """The policy document is unusable; nothing changes."""


def _amount(v, where: str) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, str) and v.isdigit())):
        raise PolicyInvalid(f"{where}: an amount is an integer or a decimal string of base units, got {v!r}")
    n = int(v)
    if n < 0:
        raise PolicyInvalid(f"{where}: must be >= 0")
    return n


def _key(v, where: str) -> bytes:
    try:
        b = bytes.fromhex(v)
    except (TypeError, ValueError):
        raise PolicyInvalid(f"{where}: not hex") from None
    if len(b) != 32:
        raise PolicyInvalid(f"{where}: an Ed25519 public key is 32 bytes")
    return b


@dataclass(frozen=True)
class TierLimits:
    per_withdrawal_max: int
    day_max: int
    month_max: int


@dataclass(frozen=True)
class Band:
    asset: str
    amount_max: int
    approvals_min: int


@dataclass(frozen=True)
class VaultPolicy:
    id: str
    kind: str
    delay_s: int
    bands: tuple[Band, ...]


@dataclass(frozen=True)
class WaterMarks:
    hot_vault: str
    cold_vault: str
    high_water: int
    target: int
    low_water: int


@dataclass(frozen=True)
class Policy:
    version: int
    approvers: dict[str, bytes]
    fee_max: dict[str, int]
    tiers: dict[str, dict[str, TierLimits]]
    velocity_exceeded: str
    whitelist_required: bool
    whitelist_timelock_s: int
    sanctions_files: tuple[str, ...]
    block_files: tuple[str, ...]
    anomaly_history_min: int
    anomaly_hold_multiple: int
    vaults: dict[str, VaultPolicy]
    rebalance: dict[str, WaterMarks] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> "Policy":
        if len(text.encode()) > limits.RISK_POLICY_BYTES_MAX:
            raise PolicyInvalid("policy too large")
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyInvalid(f"not TOML: {exc}") from None
        try:
            version = d["version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise PolicyInvalid("version must be a positive integer")
            approvers = {str(k): _key(v, f"approvers.{k}") for k, v in d.get("approvers", {}).items()}
            fee_max = {str(k): _amount(v, f"fee_max.{k}") for k, v in d["fee_max"].items()}
            tiers = {
                str(t): {
                    str(a): TierLimits(_amount(x["per_withdrawal_max"], f"{t}.{a}.per_withdrawal_max"),
                                       _amount(x["day_max"], f"{t}.{a}.day_max"), _amount(x["month_max"], f"{t}.{a}.month_max"))
                    for a, x in assets.items()
                }
                for t, assets in d.get("kyc_tiers", {}).items()
            }
            vel = d.get("velocity", {}).get("exceeded", "hold")
            if vel not in (HOLD, DENY):
                raise PolicyInvalid("velocity.exceeded must be hold or deny")
            wl = d.get("whitelist", {})
            timelock = wl.get("timelock_s", 0)
            if not isinstance(timelock, int) or timelock < 0:
                raise PolicyInvalid("whitelist.timelock_s must be an integer >= 0")
            lists = d.get("lists", {})
            an = d.get("anomaly", {})
            hist, mult = an.get("history_min", 3), an.get("hold_multiple", 10)
            if not (isinstance(hist, int) and hist >= 1 and isinstance(mult, int) and mult >= 2):
                raise PolicyInvalid("anomaly.history_min >= 1 and anomaly.hold_multiple >= 2 (integers)")
            vaults = {}
            for i, v in enumerate(d.get("vaults", [])):
                if v.get("kind") not in ("hot", "cold"):
                    raise PolicyInvalid(f"vaults[{i}].kind must be hot or cold")
                delay = v.get("delay_s", 0)
                if not isinstance(delay, int) or delay < 0:
                    raise PolicyInvalid(f"vaults[{i}].delay_s must be an integer >= 0")
                bands = []
                for j, b in enumerate(v.get("bands", [])):
                    n = b["approvals_min"]
                    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= len(approvers):
                        raise PolicyInvalid(f"vaults[{i}].bands[{j}].approvals_min must be 0..{len(approvers)}")
                    if v["kind"] == "cold" and n == 0:
                        raise PolicyInvalid(f"vaults[{i}]: a cold vault needs approvals in every band")
                    bands.append(Band(str(b["asset"]), _amount(b["amount_max"], f"vaults[{i}].bands[{j}].amount_max"), n))
                bands.sort(key=lambda b: (b.asset, b.amount_max))
                vaults[str(v["id"])] = VaultPolicy(str(v["id"]), v["kind"], delay, tuple(bands))
            rebalance = {}
            for asset, r in d.get("rebalance", {}).items():
                w = WaterMarks(str(r["hot_vault"]), str(r["cold_vault"]), _amount(r["high_water"], f"rebalance.{asset}.high_water"),
                               _amount(r["target"], f"rebalance.{asset}.target"), _amount(r["low_water"], f"rebalance.{asset}.low_water"))
                if not w.low_water <= w.target <= w.high_water:
                    raise PolicyInvalid(f"rebalance.{asset}: low_water <= target <= high_water")
                rebalance[str(asset)] = w
        except KeyError as exc:
            raise PolicyInvalid(f"missing {exc}") from None
        except (TypeError, AttributeError) as exc:
            raise PolicyInvalid(f"malformed: {exc}") from None
        return cls(version, approvers, fee_max, tiers, vel, bool(wl.get("required", False)), timelock,
                   tuple(map(str, lists.get("sanctions", []))), tuple(map(str, lists.get("block", []))),
                   hist, mult, vaults, rebalance)

    # --- approvals ---------------------------------------------------------------------------
    def quorum(self, vault_id: str, asset: str, amount: int) -> tuple[int, int]:
        """(approvals needed, delay in seconds) for `amount` of `asset` from `vault_id`.
        Raises ApprovalRefused when no band covers it."""
        v = self.vaults.get(vault_id)
        if v is None:
            raise ApprovalRefused("vault_not_in_policy", vault_id)
        for b in v.bands:
            if b.asset == asset and amount <= b.amount_max:
                return b.approvals_min, v.delay_s
        raise ApprovalRefused("amount_exceeds_vault_policy", f"{amount} {asset} from {vault_id}")

    def verify_approval(self, approver_id: str, message: bytes, signature: bytes) -> None:
        pk = self.approvers.get(approver_id)
        if pk is None:
            raise ApprovalRefused("approver_unknown", approver_id)
        try:
            VerifyKey(pk).verify(message, signature)
        except (BadSignatureError, ValueError, TypeError):
            raise ApprovalRefused("approval_signature_invalid", approver_id) from None


class ApprovalRefused(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def policy_digest(text: str) -> bytes:
    return hashlib.sha256(b"custody/risk-policy/v1\n" + text.encode()).digest()


# --- address lists -----------------------------------------------------------------------------
_list_cache: dict[str, tuple[float, int, frozenset[str]]] = {}


def load_list(path: str) -> frozenset[str]:
    """Addresses in a list file (one per line, '#' comments), cached until the file changes.
    A missing or oversized file raises PolicyInvalid: screening never runs on a partial list."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise PolicyInvalid(f"list file {path}: {exc.strerror}") from None
    hit = _list_cache.get(path)
    if hit is not None and hit[0] == st.st_mtime and hit[1] == st.st_size:
        return hit[2]
    if st.st_size > limits.RISK_LIST_FILE_BYTES_MAX:
        raise PolicyInvalid(f"list file {path} larger than {limits.RISK_LIST_FILE_BYTES_MAX} bytes")
    out = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            a = line.split("#", 1)[0].strip()
            if a:
                out.add(normalise_address(a))
                if len(out) > limits.RISK_LIST_ENTRIES_MAX:
                    raise PolicyInvalid(f"list file {path}: more than {limits.RISK_LIST_ENTRIES_MAX} entries")
    entry = frozenset(out)
    _list_cache[path] = (st.st_mtime, st.st_size, entry)
    return entry


def normalise_address(a: str) -> str:
    """Comparison form: bech32 and 0x-hex addresses are case-insensitive."""
    return a.strip().lower()


# --- screening ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Profile:
    kyc_tier: str | None
    frozen_reason: str | None = None


@dataclass(frozen=True)
class History:
    """The customer's own past withdrawals in this asset (not failed, rejected or cancelled)."""

    day_total: int  # within the rolling 24 h
    month_total: int  # within the rolling 30 days
    past_amounts: tuple[int, ...]  # most recent first, at most RISK_HISTORY_MAX


@dataclass(frozen=True)
class Decision:
    outcome: str  # allow | hold | deny
    reasons: tuple[str, ...]
    score: int  # anomaly score in percent of the customer's median (0 without history)
    policy_version: int
    details: tuple[str, ...] = ()

    @property
    def blocking(self) -> bool:
        return any(r in BLOCKING for r in self.reasons)

    def as_json(self) -> dict:
        return {"outcome": self.outcome, "reasons": list(self.reasons), "score": self.score,
                "policy_version": self.policy_version, "details": list(self.details)}


def _median(values: tuple[int, ...]) -> int:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) // 2


def screen(policy: Policy, profile: Profile, asset: str, amount: int, destination: str,
           whitelist_usable_after_ns: int | None, history: History, now_ns: int,
           sanctions: frozenset[str] = frozenset(), blocked: frozenset[str] = frozenset()) -> Decision:
    """Every reason that applies, in precedence order; the outcome is the strictest."""
    assert type(amount) is int and amount > 0
    deny, hold, details = [], [], []
    dest = normalise_address(destination)
    if profile.frozen_reason is not None:
        deny.append("account_frozen")
        details.append(f"frozen: {profile.frozen_reason}")
    if dest in sanctions:
        deny.append("destination_sanctioned")
    if dest in blocked:
        deny.append("destination_blocked")
    tier = policy.tiers.get(profile.kyc_tier or "")
    lim = None
    if tier is None:
        deny.append("kyc_tier_unknown")
    else:
        lim = tier.get(asset)
        if lim is None:
            deny.append("asset_not_allowed_for_tier")
        elif amount > lim.per_withdrawal_max:
            deny.append("amount_exceeds_tier_limit")
            details.append(f"{amount} > {lim.per_withdrawal_max} per withdrawal")
    if policy.whitelist_required and whitelist_usable_after_ns is None:
        deny.append("address_not_whitelisted")
    velocity = deny if policy.velocity_exceeded == DENY else hold
    if lim is not None:
        if history.day_total + amount > lim.day_max:
            velocity.append("velocity_day_exceeded")
            details.append(f"24h: {history.day_total} + {amount} > {lim.day_max}")
        if history.month_total + amount > lim.month_max:
            velocity.append("velocity_month_exceeded")
            details.append(f"30d: {history.month_total} + {amount} > {lim.month_max}")
    if whitelist_usable_after_ns is not None and now_ns < whitelist_usable_after_ns:
        hold.append("address_in_timelock")
        details.append(f"usable in {(whitelist_usable_after_ns - now_ns) // 1_000_000_000} s")
    score = 0
    if len(history.past_amounts) >= policy.anomaly_history_min:
        median = max(1, _median(history.past_amounts))
        score = amount * 100 // median
        if score > policy.anomaly_hold_multiple * 100:
            hold.append("amount_anomalous")
            details.append(f"{amount} is {score}% of the customer's median {median}")
    reasons = tuple(r for r in REASONS if r in deny or r in hold)
    outcome = DENY if deny else HOLD if hold else ALLOW
    return Decision(outcome, reasons, score, policy.version, tuple(details))
