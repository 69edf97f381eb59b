"""The static verifier page (proofs/web) in headless Chromium: the files a customer gets
verify, and every tampering is rejected with the same reason the CLI gives."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.support import por_world as W

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return W.make_world(tmp_path_factory.mktemp("por-web"))


def verify(page, files: dict, public_key: str = "") -> tuple[str, str, str]:
    for name in ("proof", "header", "prev", "assets"):
        page.set_input_files(f"#{name}", [str(files[name])] if name in files else [])
    page.fill("#pubkey", public_key)
    page.click("#verify")
    # A selector, not wait_for_function: the page's CSP forbids eval, and Playwright's polling uses it.
    page.wait_for_selector("#result[data-status='valid'], #result[data-status='invalid']", state="attached", timeout=60_000)
    result = page.locator("#result")
    return result.get_attribute("data-status"), result.get_attribute("data-reason"), page.inner_text("#details")


def test_valid_proof_header_and_assets(page, world, tmp_path):
    files = world.write_files("acct-émile")
    status, reason, details = verify(page, files, world.public_key_hex)
    assert (status, reason) == ("valid", ""), details
    assert f"your balance {2**70} is counted" in details
    assert "valid: 4 address signatures" in details
    assert "ETH: reserves 3000000000000000000 / liabilities 2500000000000000003 = 1.1999" in details
    page.screenshot(path=str(tmp_path / "verify-valid.png"), full_page=True)


def test_vector_proofs_verify_in_the_browser(page, vector, tmp_path):
    compact = json.loads((W.FIXTURES / "por-vector-compact.json").read_text())["proofs"]
    for account, proof in [*vector["expected"]["proofs"].items(), *compact.items()]:
        p = tmp_path / f"{account}.json"
        p.write_text(json.dumps(proof))
        status, reason, details = verify(page, {"proof": p})
        assert (status, reason) == ("valid", ""), details
        assert f"valid: proof for {account} in snapshot" in details


def test_valid_compact_proof_with_header_and_assets(page, world, tmp_path):
    files = world.write_files("acct-émile")
    files["proof"].write_text(json.dumps(W.mst.to_compact(json.loads(files["proof"].read_text()))))
    status, reason, details = verify(page, files, world.public_key_hex)
    assert (status, reason) == ("valid", ""), details
    assert f"your balance {2**70} is counted" in details
    assert "valid: the root is the one signed in the header" in details


def test_base64url_decoding_matches_python(page):
    """verify.js decodes base64url itself (atob is lenient): the same bytes as Python, and
    the same refusals, on every length and on the texts that must be refused."""
    from proofs import mst

    for n in range(0, 40):
        data = bytes((7 * i + 250) % 256 for i in range(n))
        text = mst.b64u(data)
        assert page.evaluate("(t) => POR.toHex(POR.b64u(t, 'x', 'r'))", text) == data.hex(), n
    for bad in ("A", "AB", "AAB", "Kg==", "+/8", " Kg", "Kg\n", "AAAAA"):
        got = page.evaluate("(t) => { try { POR.b64u(t, 'x', 'r'); return 'accepted'; } catch (e) { return e.reason; } }", bad)
        assert got == "r", bad


@pytest.mark.parametrize("name, kind, mutate, reason", W.TAMPER_CASES, ids=[c[0] for c in W.TAMPER_CASES])
def test_tampered_files_are_rejected(page, world, tmp_path, name, kind, mutate, reason):
    files = world.write_files()
    docs = {k: json.loads(files[k].read_text()) for k in ("proof", "header", "assets")}
    mutate(docs)
    out = {k: tmp_path / f"{k}.json" for k in docs}
    for k, doc in docs.items():
        out[k].write_text(json.dumps(doc))
    chosen = {"proof": {"proof": out["proof"]}, "header": {"header": out["header"]},
              "assets": {"header": out["header"], "assets": out["assets"]}}[kind]
    status, got, details = verify(page, chosen, world.public_key_hex)
    assert (status, got) == ("invalid", reason), details


@pytest.mark.parametrize("name, kind, edit, reason", W.RAW_TAMPER_CASES, ids=[c[0] for c in W.RAW_TAMPER_CASES])
def test_json_text_tampering_is_rejected(page, world, tmp_path, name, kind, edit, reason):
    out = W.raw_tampered(world.write_files(), kind, edit, tmp_path)
    chosen = {"proof": {"proof": out["proof"]}, "header": {"header": out["header"]},
              "assets": {"header": out["header"], "assets": out["assets"]}}[kind]
    status, got, details = verify(page, chosen, world.public_key_hex)
    assert (status, got) == ("invalid", reason), details


def test_oversized_file_is_rejected(page, world, tmp_path):
    big = tmp_path / "big-header.json"
    big.write_text(json.dumps(world.published.signed_header) + " " * (1 << 16))
    status, got, details = verify(page, {"header": big}, world.public_key_hex)
    assert (status, got) == ("invalid", "file_too_large"), details


def test_header_chain_and_wrong_pinned_key(page, world, tmp_path):
    wallets = W.TestKeyWallets(W.HOLDINGS)
    second_world = W.snapshot.take_snapshot(
        W.TableLiabilities(W.BALANCES), wallets, wallets, world.store, world.key, W.dt.datetime(2026, 11, 24, tzinfo=W.dt.timezone.utc)
    )
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(world.published.signed_header))
    second.write_text(json.dumps(second_world.signed_header))
    assert verify(page, {"header": second, "prev": first}, world.public_key_hex)[:2] == ("valid", "")
    assert verify(page, {"header": first, "prev": second}, world.public_key_hex)[:2] == ("invalid", "header_chain_broken")
    assert verify(page, {"header": first}, "33" * 32)[:2] == ("invalid", "header_wrong_key")


def test_hash_primitives_match_python(page):
    """Keccak-256 and RIPEMD-160 are written out in verify.js: check them on inputs that cross
    block boundaries against Python's implementations."""
    from proofs.assets import keccak256

    for n in (0, 1, 55, 56, 63, 64, 135, 136, 137, 300):
        data = bytes(range(256)) * 2
        data = data[:n]
        got = page.evaluate("(h) => [POR.toHex(POR.keccak256(POR.fromHex(h))), POR.toHex(POR.ripemd160(POR.fromHex(h)))]", data.hex())
        assert got == [keccak256(data).hex(), hashlib.new("ripemd160", data).hexdigest()], n


def test_works_offline_from_a_file_url(browser, vector, tmp_path):
    """Saved to disk and opened with no server and no network, the page still verifies."""
    from proofs import WEB_DIR

    context = browser.new_context(offline=True)
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((WEB_DIR / "verify.html").as_uri())
        page.wait_for_selector("#ready[data-ready='1']", state="attached", timeout=10_000)
        p = tmp_path / "alice.json"
        p.write_text(json.dumps(vector["expected"]["proofs"]["acct-alice"]))
        status, reason, details = verify(page, {"proof": p})
        assert (status, reason) == ("valid", ""), details
        assert not errors, errors
    finally:
        context.close()
