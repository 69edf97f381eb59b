"""The API's secrets key (node/secretbox.py) for tests: one 0600 key file per test process, or
one per work directory for an API run as its own process (so that its restarts share it)."""

from __future__ import annotations

import atexit
import pathlib
import shutil
import tempfile

from node.secretbox import write_new_key

_process_key: pathlib.Path | None = None


def secrets_key_file(workdir: pathlib.Path | None = None) -> pathlib.Path:
    global _process_key
    if workdir is not None:
        path = pathlib.Path(workdir) / "api-secrets.key"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            write_new_key(path)
        return path
    if _process_key is None:
        d = pathlib.Path(tempfile.mkdtemp(prefix="custody-test-key-"))
        atexit.register(shutil.rmtree, d, True)
        write_new_key(d / "api-secrets.key")
        _process_key = d / "api-secrets.key"
    return _process_key


def secret_box():
    """The SecretBox of this test process's key file (as an API app built by the tests has)."""
    from node.secretbox import SecretBox

    return SecretBox.from_file(secrets_key_file())
