"""custody-verify --bitcoin-rpc-password-file: the password comes from a file, never from the
command line (proofs/verify_cli.py _with_password)."""

from __future__ import annotations

import pytest

from proofs.verify_cli import _Usage, _with_password


@pytest.mark.parametrize("url, password, want", [
    ("http://custody-dev@127.0.0.1:18556", "s3cret", "http://custody-dev:s3cret@127.0.0.1:18556"),
    ("http://u@localhost:8332", "p@ss:w/rd", "http://u:p%40ss%3Aw%2Frd@localhost:8332"),  # quoted, not parsed
])
def test_the_password_is_read_from_the_file(tmp_path, url, password, want):
    f = tmp_path / "pw"
    f.write_text(password + "\n")
    assert _with_password(url, str(f)) == want


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:18556", "names the user"),          # no user
    ("http://u:inline@127.0.0.1:18556", "names the user"),  # a password on the command line as well
])
def test_a_url_without_a_user_or_with_a_password_is_refused(tmp_path, url, why):
    f = tmp_path / "pw"
    f.write_text("x")
    with pytest.raises(_Usage, match=why):
        _with_password(url, str(f))


def test_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(_Usage, match="password-file"):
        _with_password("http://u@h:1", str(tmp_path / "absent"))


def test_without_a_file_the_url_is_used_as_given():
    assert _with_password("http://u:p@h:1", None) == "http://u:p@h:1"
