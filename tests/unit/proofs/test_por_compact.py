"""por-mst/1-compact (proofs/por-mst-1-compact.md): its vector is the por-mst/1 vector's proofs
re-encoded, it decodes with nothing but the standard library's base64 to the same numbers, it
proves exactly what the por-mst/1 proof proves, and every amount and hash has one spelling."""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs import mst

COMPACT_VECTOR = pathlib.Path(__file__).resolve().parents[2] / "fixtures" / "por" / "por-vector-compact.json"


@pytest.fixture(scope="module")
def compact_vector() -> dict:
    return json.loads(COMPACT_VECTOR.read_text())


def _std_decode(text: str) -> bytes:
    """An independent reading of unpadded base64url: the standard library, validating."""
    return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)


def test_vector_is_the_por_mst_1_vector_re_encoded(vector, compact_vector):
    assert compact_vector["format"] == mst.FORMAT_COMPACT
    assert set(compact_vector["proofs"]) == set(vector["expected"]["proofs"])
    for account, proof in vector["expected"]["proofs"].items():
        assert json.dumps(mst.to_compact(proof)) == json.dumps(compact_vector["proofs"][account]), account


def test_vector_values_decode_to_the_por_mst_1_values(vector, compact_vector):
    """Walks both proofs side by side: every hash is the same 32 bytes, every amount the same
    integer, every other field identical — read with base64.b64decode, not with proofs.mst."""

    def same(v1, vc, where):
        if isinstance(v1, dict):
            assert list(v1) == list(vc), where
            for k in v1:
                same(v1[k], vc[k], f"{where}.{k}")
        elif isinstance(v1, list):
            assert len(v1) == len(vc), where
            for i, (a, b) in enumerate(zip(v1, vc)):
                same(a, b, f"{where}[{i}]")
        elif where.endswith((".hash", ".key")):
            assert _std_decode(vc) == bytes.fromhex(v1) and len(vc) == 43, where
        elif re.search(r"\.(sums|balances|account_balances)\[\d+\]$", where):
            raw = _std_decode(vc)
            assert int.from_bytes(raw, "big") == int(v1) and raw[:1] != b"\x00", where
        elif where.endswith(".format"):
            assert (v1, vc) == (mst.FORMAT, mst.FORMAT_COMPACT)
        else:
            assert v1 == vc, where

    for account, proof in vector["expected"]["proofs"].items():
        same(proof, compact_vector["proofs"][account], account)


def test_vector_proofs_verify_and_prove_the_same(vector, compact_vector):
    for account, proof in compact_vector["proofs"].items():
        got = mst.verify_user_proof(proof)
        assert got.format == mst.FORMAT_COMPACT
        assert dataclasses.replace(got, format=mst.FORMAT) == mst.verify_user_proof(vector["expected"]["proofs"][account])


@pytest.mark.parametrize("value, text", [(0, ""), (42, "Kg"), (150_000_000, "CPDRgA"), (2**128 - 1, "_" * 21 + "w"), (256, "AQA")])
def test_the_spec_table(value, text):
    assert mst.compact_amount(value) == text
    assert mst.parse_compact_amount(text, "x") == value


@pytest.mark.parametrize(
    "text, reason",
    [
        ("AA", "amount_malformed"),  # 0x00: a leading zero byte (0 is "")
        ("ACo", "amount_malformed"),  # 0x00 0x2a
        ("Kg==", "amount_malformed"),  # padding
        ("Kh", "amount_malformed"),  # unused trailing bits set
        ("K", "amount_malformed"),  # 4k+1 characters
        ("+/8", "amount_malformed"),  # the standard alphabet
        (" Kg", "amount_malformed"),
        ("Kg\n", "amount_malformed"),
        (42, "amount_malformed"),
        (None, "amount_malformed"),
        (mst.b64u(b"\x01" + bytes(16)), "amount_out_of_range"),
    ],
)
def test_malformed_amounts_are_refused(text, reason):
    with pytest.raises(mst.ProofInvalid) as exc:
        mst.parse_compact_amount(text, "x")
    assert exc.value.reason == reason
    with pytest.raises(mst.ProofInvalid) as exc:  # the fast list parser names the same reason
        mst.parse_compact_amounts(["Kg", text], "sums")
    assert exc.value.reason == reason and "sums[1]" in str(exc.value)


@pytest.mark.parametrize("text", ["", mst.b64u(bytes(31)), mst.b64u(bytes(33)), "ab" * 32, mst.b64u(bytes(32)) + "="])
def test_malformed_hashes_are_refused(text):
    with pytest.raises(mst.ProofInvalid) as exc:
        mst.parse_compact_hash(text, 32, "key")
    assert exc.value.reason == "base64_malformed"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= ", max_size=24))
def test_one_spelling_per_byte_string(text):
    """parse_b64u accepts exactly the texts that re-encode to themselves."""
    try:
        canonical = re.fullmatch(r"[A-Za-z0-9_-]*", text) is not None and mst.b64u(_std_decode(text)) == text
    except ValueError:
        canonical = False
    try:
        raw = mst.parse_b64u(text, "x", "r")
    except mst.ProofInvalid:
        assert not canonical, text
    else:
        assert canonical and raw == _std_decode(text), text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**128 - 1))
def test_amounts_round_trip(x):
    assert mst.parse_compact_amounts([mst.compact_amount(x)], "x") == [x]


def test_the_list_parser_agrees_with_the_one_value_parser_on_str_subclasses():
    class Text(str):
        pass

    assert mst.parse_compact_amounts([Text("Kg")], "x") == [42] == [mst.parse_compact_amount(Text("Kg"), "x")]


def test_encodings_do_not_mix(vector):
    """A por-mst/1 proof with one compact value (or the reverse) is refused, not half-read."""
    proof = json.loads(json.dumps(vector["expected"]["proofs"]["acct-alice"]))
    proof["leaves"][0]["path"][0]["sums"][0] = mst.compact_amount(int(proof["leaves"][0]["path"][0]["sums"][0]) or 1)
    with pytest.raises(mst.ProofInvalid) as exc:
        mst.verify_user_proof(proof)
    assert exc.value.reason == "amount_malformed"
    compact = mst.to_compact(vector["expected"]["proofs"]["acct-alice"])
    compact["root"]["hash"] = vector["expected"]["proofs"]["acct-alice"]["root"]["hash"]
    with pytest.raises(mst.ProofInvalid) as exc:
        mst.verify_user_proof(compact)
    assert exc.value.reason == "base64_malformed"


def test_unknown_format_is_refused(vector):
    proof = dict(vector["expected"]["proofs"]["acct-alice"], format="por-mst/2")
    with pytest.raises(mst.ProofInvalid) as exc:
        mst.verify_user_proof(proof)
    assert exc.value.reason == "format_unknown"


_TEXTS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= ", max_size=24)
_VALUES = st.one_of(st.sampled_from(["", "AA", "AAA", "_w", "_____________________w", "______________________"]),
                    st.integers(0, 2**130).map(lambda x: mst.b64u(x.to_bytes((x.bit_length() + 7) // 8, "big"))), _TEXTS,
                    st.integers(0, 9), st.none())


@settings(max_examples=600, deadline=None)
@given(st.lists(_VALUES, min_size=0, max_size=4), st.integers(1, 4))
def test_the_lanes_parser_accepts_exactly_what_the_one_value_parser_accepts(values, n):
    """verify_user_proof (and parse_compact_amounts) read sums lists through
    _fast_compact_lanes and fall back to parse_compact_amount, value by value, to name the
    fault: the two must agree on every list."""
    try:
        want = mst.sums_bytes([mst.parse_compact_amount(v, "x") for v in values]) if len(values) == n else None
    except mst.ProofInvalid:
        want = None
    assert mst._fast_compact_lanes(values, n) == want
    if len(values) == n:
        try:
            assert mst.sums_bytes(mst.parse_compact_amounts(values, "x")) == want
        except mst.ProofInvalid:
            assert want is None


@settings(max_examples=400, deadline=None)
@given(st.one_of(_TEXTS, st.binary(min_size=31, max_size=33).map(mst.b64u),
                 st.tuples(st.binary(min_size=32, max_size=32).map(mst.b64u), _TEXTS.filter(bool)).map(lambda t: t[0][:-1] + t[1][0]),
                 st.tuples(st.binary(min_size=32, max_size=32).map(mst.b64u), st.sampled_from("+/=."), st.integers(0, 42))
                 .map(lambda t: t[0][:t[2]] + t[1] + t[0][t[2] + 1:])))
def test_the_verifiers_fast_hash_path_accepts_exactly_what_the_hash_parser_accepts(text):
    try:
        want = mst.parse_compact_hash(text, 32, "x")
    except mst.ProofInvalid:
        want = None
    assert mst._fast_compact_hash(text) == want


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**128 - 1)), min_size=1, max_size=8))
def test_sums_added_as_lanes_overflow_exactly_when_a_sum_does(pairs):
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    packed = [int.from_bytes(mst.sums_bytes(v), "big") for v in (a, b)]
    try:
        want = mst.sums_bytes(mst.add_sums(a, b))
    except mst.ProofInvalid:
        want = None
    try:
        got = mst._add_lanes(*packed, mst._lane_edges(len(pairs))).to_bytes(16 * len(pairs), "big")
    except mst.ProofInvalid:
        got = None
    assert got == want
