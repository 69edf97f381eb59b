"""Risk screening and the policy file, as tables: one row per case, reasons in precedence order."""

from __future__ import annotations

import pytest

from node import risk as rk

A1 = "11" * 32
A2 = "22" * 32
NOW = 10**18
SEC = 1_000_000_000

POLICY = f"""
version = 3
[approvers]
a1 = "{A1}"
a2 = "{A2}"
[fee_max]
bitcoin = "100000"
[kyc_tiers.basic.BTC]
per_withdrawal_max = "1000"
day_max = "1500"
month_max = "3000"
[velocity]
exceeded = "hold"
[whitelist]
required = true
timelock_s = 60
[anomaly]
history_min = 3
hold_multiple = 10
[[vaults]]
id = "hot"
kind = "hot"
bands = [{{ asset = "BTC", amount_max = "100", approvals_min = 0 }}, {{ asset = "BTC", amount_max = "5000", approvals_min = 2 }}]
[[vaults]]
id = "cold"
kind = "cold"
delay_s = 3600
bands = [{{ asset = "BTC", amount_max = "100000", approvals_min = 2 }}]
"""

P = rk.Policy.parse(POLICY)
OK_PROFILE = rk.Profile("basic")
NO_HISTORY = rk.History(0, 0, ())
WL_OLD = NOW - SEC  # whitelisted, past its time-lock


@pytest.mark.parametrize(
    "name, profile, amount, dest, wl, history, outcome, reasons",
    [
        ("plain allow", OK_PROFILE, 500, "bc1qgood", WL_OLD, NO_HISTORY, "allow", ()),
        ("frozen", rk.Profile("basic", "court order"), 500, "bc1qgood", WL_OLD, NO_HISTORY, "deny", ("account_frozen",)),
        ("sanctioned (case-insensitive)", OK_PROFILE, 500, "BC1QBAD", WL_OLD, NO_HISTORY, "deny", ("destination_sanctioned",)),
        ("blocked", OK_PROFILE, 500, "bc1qblocked", WL_OLD, NO_HISTORY, "deny", ("destination_blocked",)),
        ("frozen and sanctioned: both, frozen first", rk.Profile("basic", "x"), 500, "bc1qbad", WL_OLD, NO_HISTORY, "deny",
         ("account_frozen", "destination_sanctioned")),
        ("unknown tier", rk.Profile("gold"), 500, "bc1qgood", WL_OLD, NO_HISTORY, "deny", ("kyc_tier_unknown",)),
        ("no tier", rk.Profile(None), 500, "bc1qgood", WL_OLD, NO_HISTORY, "deny", ("kyc_tier_unknown",)),
        ("over the tier's per-withdrawal max", OK_PROFILE, 1001, "bc1qgood", WL_OLD, NO_HISTORY, "deny", ("amount_exceeds_tier_limit",)),
        ("not whitelisted", OK_PROFILE, 500, "bc1qgood", None, NO_HISTORY, "deny", ("address_not_whitelisted",)),
        ("in time-lock", OK_PROFILE, 500, "bc1qgood", NOW + 30 * SEC, NO_HISTORY, "hold", ("address_in_timelock",)),
        ("time-lock ends exactly now", OK_PROFILE, 500, "bc1qgood", NOW, NO_HISTORY, "allow", ()),
        ("24h velocity", OK_PROFILE, 600, "bc1qgood", WL_OLD, rk.History(1000, 1000, ()), "hold", ("velocity_day_exceeded",)),
        ("24h velocity exactly at the limit", OK_PROFILE, 500, "bc1qgood", WL_OLD, rk.History(1000, 1000, ()), "allow", ()),
        ("30d velocity", OK_PROFILE, 600, "bc1qgood", WL_OLD, rk.History(0, 2500, ()), "hold", ("velocity_month_exceeded",)),
        ("anomalous against own median", OK_PROFILE, 900, "bc1qgood", WL_OLD, rk.History(0, 0, (50, 80, 60)), "hold", ("amount_anomalous",)),
        ("not anomalous without enough history", OK_PROFILE, 900, "bc1qgood", WL_OLD, rk.History(0, 0, (50, 60)), "allow", ()),
        ("deny wins over hold", OK_PROFILE, 1001, "bc1qgood", NOW + SEC, NO_HISTORY, "deny",
         ("amount_exceeds_tier_limit", "address_in_timelock")),
    ],
)
def test_screen(name, profile, amount, dest, wl, history, outcome, reasons):
    d = rk.screen(P, profile, "BTC", amount, dest, wl, history, NOW, frozenset({"bc1qbad"}), frozenset({"bc1qblocked"}))
    assert (d.outcome, d.reasons) == (outcome, reasons), f"{name}: got {d.outcome} {d.reasons} {d.details}"
    assert d.policy_version == 3


def test_velocity_deny_policy_denies():
    p = rk.Policy.parse(POLICY.replace('exceeded = "hold"', 'exceeded = "deny"'))
    d = rk.screen(p, OK_PROFILE, "BTC", 600, "bc1qgood", WL_OLD, rk.History(1000, 1000, ()), NOW)
    assert (d.outcome, d.reasons) == ("deny", ("velocity_day_exceeded",))


def test_anomaly_score_is_an_integer_percentage_with_its_reason():
    d = rk.screen(P, OK_PROFILE, "BTC", 900, "bc1qgood", WL_OLD, rk.History(0, 0, (50, 80, 60)), NOW)
    assert d.score == 1500 and type(d.score) is int
    assert any("median 60" in x for x in d.details), d.details


@pytest.mark.parametrize(
    "vault, amount, expected",
    [("hot", 1, (0, 0)), ("hot", 100, (0, 0)), ("hot", 101, (2, 0)), ("hot", 5000, (2, 0)), ("cold", 7, (2, 3600))],
)
def test_quorum_per_vault_and_band(vault, amount, expected):
    assert P.quorum(vault, "BTC", amount) == expected


@pytest.mark.parametrize("vault, asset, amount, reason", [
    ("hot", "BTC", 5001, "amount_exceeds_vault_policy"),
    ("hot", "ETH", 1, "amount_exceeds_vault_policy"),
    ("nope", "BTC", 1, "vault_not_in_policy"),
])
def test_quorum_refusals(vault, asset, amount, reason):
    with pytest.raises(rk.ApprovalRefused) as e:
        P.quorum(vault, asset, amount)
    assert e.value.reason == reason


@pytest.mark.parametrize("change, message", [
    ('version = 3', "version = 0", ),
    ('exceeded = "hold"', 'exceeded = "maybe"'),
    ('per_withdrawal_max = "1000"', "per_withdrawal_max = 1.5"),
    ('a1 = "' + A1 + '"', 'a1 = "zz"'),
    ('delay_s = 3600\nbands = [{ asset = "BTC", amount_max = "100000", approvals_min = 2 }]',
     'delay_s = 3600\nbands = [{ asset = "BTC", amount_max = "100000", approvals_min = 0 }]'),
    ('[fee_max]\nbitcoin = "100000"', ""),
])
def test_bad_policies_are_refused(change, message):
    text = POLICY.replace(change, message)
    assert text != POLICY, "the case must change the policy"
    with pytest.raises(rk.PolicyInvalid):
        rk.Policy.parse(text)


def test_lists_load_from_files_with_comments(tmp_path):
    f = tmp_path / "ofac.txt"
    f.write_text("# header\nBC1QBAD   # entity 1\n\n0xAbC\n")
    assert rk.load_list(str(f)) == frozenset({"bc1qbad", "0xabc"})
    with pytest.raises(rk.PolicyInvalid):
        rk.load_list(str(tmp_path / "missing.txt"))
