"""Private files at rest: the signer's data dir (sealed shares, the key check, pre-parameters,
records), its TLS key and its passphrase file belong to the signer's own user and to no one
else — files 0600 (or stricter), folders 0700. Sealing keeps their contents secret; the modes
keep another local user from copying a share for an offline passphrase search, or replacing it.

`custody signer` checks at start, before it opens the store, and refuses to start otherwise
(exit 2), naming the file, its mode and the fix:

    refusing to start: /srv/peer-1/data/vaults/hot-1.sealed is mode 0644; a share file must be
    0600 (chmod 600 /srv/peer-1/data/vaults/hot-1.sealed)

Everything under the data dir is checked, whatever module wrote it; symbolic links and other
special files there are refused too (the check would see the link, not what it names).
"""

from __future__ import annotations

import os
import pathlib
import stat

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_WHAT_BY_FOLDER = {"vaults": "a share file", "preparams": "a pre-parameters file", "records": "a record file"}


class FileExposed(ValueError):
    """A private file or folder is open to other users, or owned by another: refuse to start."""


def _check(path: pathlib.Path, st: os.stat_result, what: str, folder: bool) -> None:
    uid = os.geteuid()
    if st.st_uid != uid:
        raise FileExposed(f"{path} is owned by uid {st.st_uid}, not the signer's uid {uid}; {what} must belong "
                          f"to the signer's user (chown {uid} {path})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        want = "0700 (chmod 700" if folder else "0600 (chmod 600"
        raise FileExposed(f"{path} is mode {mode:04o}; {what} must be {want} {path})")


def check_private_file(path, what: str = "a private file") -> None:
    """`path` (following a symbolic link: what it names must be private) is a regular file owned
    by this uid with no group or other permission bits."""
    path = pathlib.Path(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FileExposed(f"{path} is not a regular file; {what} must be one")
    _check(path, st, what, folder=False)


def check_private_tree(data_dir) -> None:
    """`data_dir` and every folder under it 0700, every file 0600 (or stricter), all owned by this
    uid; no symbolic links or special files. Raises FileExposed naming the first offender."""
    root = pathlib.Path(data_dir)
    st = os.stat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise FileExposed(f"{root} is not a folder; the data dir must be one")
    _check(root, st, "the data dir", folder=True)
    pending = [root]
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            path = pathlib.Path(e.path)
            st = e.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _check(path, st, "a folder in the data dir", folder=True)
                pending.append(path)
            elif stat.S_ISREG(st.st_mode):
                parts = path.relative_to(root).parts
                what = _WHAT_BY_FOLDER.get(parts[0], "") if len(parts) > 1 else ""
                _check(path, st, what or "a file in the data dir", folder=False)
            else:
                raise FileExposed(f"{path} is not a regular file or folder; the data dir holds only its own files and folders")


def fsync_dir(path) -> None:
    """Makes a file created, renamed or removed in `path` survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path) -> pathlib.Path:
    """Creates `path` 0700 if it is missing (an existing one is left for the check to judge)."""
    path = pathlib.Path(path)
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    return path


def check_at_start(cfg) -> None:
    """The data dir (created 0700 if missing), the TLS key and the passphrase file, if any."""
    make_private_dir(cfg.data_dir)
    check_private_tree(cfg.data_dir)
    check_private_file(cfg.tls_key, "a TLS private key")
    if cfg.passphrase_file is not None:
        check_private_file(cfg.passphrase_file, "a passphrase file")
