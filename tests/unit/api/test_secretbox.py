"""node/secretbox.py: what opens, what does not (and says why), the key file's checks, and the
API settings refusing to start without a usable key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from pydantic import ValidationError

from api.settings import ApiSettings
from node.secretbox import KEY_BYTES, SecretBox, SecretBoxError, new_key_text, sealed_text_len, write_new_key


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(os.urandom(KEY_BYTES))


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time(box):
    a = box.seal_text(b"whsec_x", purpose="webhook-secret", context="whe_1")
    b = box.seal_text(b"whsec_x", purpose="webhook-secret", context="whe_1")
    assert a != b and a.startswith("sbx1.") and len(a) == sealed_text_len(7)
    assert box.open_text(a, purpose="webhook-secret", context="whe_1") == b"whsec_x"
    blob = box.seal(b"", purpose="idempotent-response", context="c\x00k")
    assert box.open(blob, purpose="idempotent-response", context="c\x00k") == b""


@pytest.mark.parametrize("purpose, context", [("webhook-secret", "whe_2"), ("idempotent-response", "whe_1"), ("webhook-secret", "")])
def test_a_value_does_not_open_for_another_row_or_purpose(box, purpose, context):
    sealed = box.seal_text(b"s", purpose="webhook-secret", context="whe_1")
    with pytest.raises(SecretBoxError, match="sealed_value_tampered"):
        box.open_text(sealed, purpose=purpose, context=context)


def test_edits_another_key_and_plain_values_are_told_apart(box):
    blob = box.seal(b"secret", purpose="p", context="c")
    for i in range(len(blob)):
        edited = blob[:i] + bytes([blob[i] ^ 1]) + blob[i + 1:]
        with pytest.raises(SecretBoxError, match="not_sealed|sealed_under_another_key|sealed_value_tampered"):
            box.open(edited, purpose="p", context="c")
    with pytest.raises(SecretBoxError, match="sealed_under_another_key"):
        SecretBox(os.urandom(KEY_BYTES)).open(blob, purpose="p", context="c")
    for plain in (b"", b"whsec_abc", blob[:20]):
        with pytest.raises(SecretBoxError, match="not_sealed"):
            box.open(plain, purpose="p", context="c")
    with pytest.raises(SecretBoxError, match="not_sealed"):
        box.open_text("whsec_abc", purpose="p", context="c")
    with pytest.raises(SecretBoxError, match="sealed_value_tampered: not base64url"):
        box.open_text("sbx1.a=", purpose="p", context="c")


def test_the_key_is_redacted_from_its_repr(box):
    assert "redacted" in repr(box) and box.key_id.hex() in repr(box)


def test_key_files(tmp_path):
    path = tmp_path / "k"
    write_new_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    SecretBox.from_file(path)
    with pytest.raises(FileExistsError):
        write_new_key(path)  # never overwritten
    path.chmod(0o640)
    with pytest.raises(SecretBoxError, match="readable or writable by others"):
        SecretBox.from_file(path)
    bad = {"short": new_key_text()[:40], "padded": new_key_text() + "=", "std alphabet": "+" * 42 + "A",
           "hex": os.urandom(32).hex(), "binary": b"\xff\xfe"}
    for name, text in bad.items():
        p = tmp_path / name.replace(" ", "-")
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        p.chmod(0o600)
        with pytest.raises(SecretBoxError, match="not a key file"):
            SecretBox.from_file(p)
    with pytest.raises(SecretBoxError, match="No such file"):
        SecretBox.from_file(tmp_path / "missing")


def test_the_api_settings_have_no_default_key_and_refuse_a_bad_one(tmp_path, monkeypatch):
    monkeypatch.delenv("CUSTODY_API_SECRETS_KEY_FILE", raising=False)
    with pytest.raises(ValidationError, match="secrets_key_file"):
        ApiSettings(database_url="sqlite:///x.db")
    loose = tmp_path / "loose"
    loose.write_text(new_key_text() + "\n")
    loose.chmod(0o644)
    with pytest.raises(ValidationError, match="readable or writable by others"):
        ApiSettings(database_url="sqlite:///x.db", secrets_key_file=loose)
    loose.chmod(0o600)
    s = ApiSettings(database_url="sqlite:///x.db", secrets_key_file=loose)
    assert s.secret_box().key_id == SecretBox.from_file(loose).key_id


def test_the_cli_makes_a_key_file_and_never_overwrites_one(tmp_path):
    out = tmp_path / "api-secrets.key"
    cmd = [sys.executable, "-m", "api.cli", "api", "secrets-key", "--out", str(out)]
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=60).returncode == 0
    key_id = SecretBox.from_file(out).key_id
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "File exists" in again.stderr
    assert SecretBox.from_file(out).key_id == key_id


def test_a_rotated_box_opens_the_old_keys_values_and_seals_under_the_new_key_only():
    old_key, new_key = os.urandom(KEY_BYTES), os.urandom(KEY_BYTES)
    old, rotated = SecretBox(old_key), SecretBox(new_key, previous=(old_key,))
    before = old.seal(b"s", purpose="p", context="c")
    assert rotated.open(before, purpose="p", context="c") == b"s"
    assert not rotated.is_current(before) and old.is_current(before)
    after = rotated.seal(b"s", purpose="p", context="c")
    assert rotated.is_current(after) and rotated.is_current_text(rotated.seal_text(b"s", purpose="p", context="c"))
    assert not rotated.is_current_text("whsec_abc") and not rotated.is_current_text("sbx1.=")
    with pytest.raises(SecretBoxError, match="sealed_under_another_key"):
        old.open(after, purpose="p", context="c")
    with pytest.raises(SecretBoxError, match="sealed_under_another_key"):
        SecretBox(new_key).open(before, purpose="p", context="c")
    assert "previous=1" in repr(rotated)
