"""btcd's RPC password is never on its command line (/proc/<pid>/cmdline is readable by every
local user): the tests' btcd and `custody dev up`'s dev chains pass it in a 0600 config file
(--configfile), and RPC with it still works."""

from __future__ import annotations

import pathlib
import stat

import pytest

from tests.support import nodes
from tests.support.procs import free_port

pytestmark = pytest.mark.functional


def cmdline(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_test_btcd_takes_its_rpc_password_from_a_private_file(tmp_path):
    btcd = nodes.Btcd(tmp_path / "btcd", "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080").start()
    try:
        argv = cmdline(btcd.proc.pid)
        assert "btcd" in argv and "--configfile=" in argv, argv
        assert nodes.BTCD_RPC_PASSWORD not in argv, f"the RPC password is on btcd's command line: {argv}"
        assert stat.S_IMODE(btcd.config_path.stat().st_mode) == 0o600
        assert btcd.height() == 0  # RPC with the password from the file
    finally:
        btcd.stop()


def test_the_dev_chains_btcd_takes_its_rpc_password_from_a_private_file(tmp_path):
    from api.dev_chains import DevChains

    chains = DevChains(tmp_path, free_port(), free_port(), free_port())
    chains.ensure_initialised()
    try:
        chains.start()
        argv = cmdline(chains.btcd.popen.pid)
        password = chains.rpc_password()
        assert "btcd" in argv and "--configfile=" in argv, argv
        assert password not in argv, f"the RPC password is on btcd's command line: {argv}"
        assert stat.S_IMODE((chains.dir / "btcd" / "btcd.conf").stat().st_mode) == 0o600
        assert chains.btc_call("getblockcount") >= 110  # RPC with the password from the file
    finally:
        chains.stop()
