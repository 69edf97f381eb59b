"""Secrets the node must read back, sealed at rest: the webhook endpoints' signing secrets, and
stored idempotent responses (a replayed `register` or `rotate-secret` response carries one).

AES-256-GCM under a random 256-bit key the operator keeps in a file (`secrets_key_file` in the
API settings; `custody api secrets-key --out F` makes one). The key is random, not a passphrase,
so there is no KDF and sealing costs microseconds: it is on every idempotent POST. The
associated data names the purpose and the row (an endpoint id; a client, key, status and
content type), so a sealed value copied to another row, or edited, does not open.

    box = SecretBox.from_file("/etc/custody/api-secrets.key")
    text = box.seal_text(secret.encode(), purpose="webhook-secret", context=endpoint_id)
    secret = box.open_text(text, purpose="webhook-secret", context=endpoint_id).decode()

Layout: MAGIC | key id (4 bytes) | nonce (12) | ciphertext + tag (16); the text form is
"sbx1." + unpadded base64url of the bytes after MAGIC. The key id (the first 4 bytes of a hash
of the key) tells "sealed under another key" apart from "tampered", and picks the key.

Rotating the key: make a new one, name it `secrets_key_file` and the old one in
`previous_secrets_key_files`, restart. A box opens values sealed under any of its keys and seals
under the current one only; at start the API reseals what is under a previous key
(`is_current`), after which the old key can go.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pathlib
import stat

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
MAGIC = b"SBX1"
TEXT_PREFIX = "sbx1."
_AD = b"custody-node/secretbox/v1\x00"
_OVERHEAD = 4 + 12 + 16


class SecretBoxError(Exception):
    """A sealed value could not be opened, or the key file is unusable; the message says why."""


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64u(s: str) -> bytes:
    if not s.isascii() or "=" in s or len(s) % 4 == 1:
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def new_key_text() -> str:
    return _b64u(os.urandom(KEY_BYTES))


def write_new_key(path: str | os.PathLike) -> None:
    """A fresh key file, 0600; an existing file is never overwritten (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new_key_text() + "\n")


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"custody-node/secretbox/key-id\x00" + key).digest()[:4]


class SecretBox:
    def __init__(self, key: bytes, previous: tuple[bytes, ...] = ()):
        """`key` seals and opens; each of `previous` only opens (values sealed before a rotation)."""
        for k in (key, *previous):
            if not isinstance(k, bytes) or len(k) != KEY_BYTES:
                raise SecretBoxError(f"a key must be {KEY_BYTES} bytes")
        self.key_id = _key_id(key)
        self._aead = AESGCM(key)
        self._openers = {_key_id(k): AESGCM(k) for k in previous}
        self._openers[self.key_id] = self._aead

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id.hex()}, previous={len(self._openers) - 1}, keys=<redacted>)"

    @classmethod
    def from_file(cls, path: str | os.PathLike, previous: tuple[str | os.PathLike, ...] = ()) -> SecretBox:
        """The box of a key file, with the key files of before a rotation (`previous`)."""
        return cls(cls._read_key(path), tuple(cls._read_key(p) for p in previous))

    @staticmethod
    def _read_key(path: str | os.PathLike) -> bytes:
        """The key file: the key as unpadded base64url (43 characters), one line, readable by
        its owner only (like an ssh private key: a file others can read is refused)."""
        p = pathlib.Path(path)
        try:
            mode = p.stat().st_mode
            text = p.read_text().strip()
        except OSError as exc:
            raise SecretBoxError(f"{p}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise SecretBoxError(f"{p}: not a key file (not text)") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretBoxError(f"{p}: readable or writable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
        try:
            key = _unb64u(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES or _b64u(key) != text:
            raise SecretBoxError(f"{p}: not a key file (want {KEY_BYTES} bytes as unpadded base64url; "
                                 "`custody api secrets-key --out F` makes one)")
        return key

    @staticmethod
    def _ad(purpose: str, context: str) -> bytes:
        assert purpose and "\x00" not in purpose
        return _AD + purpose.encode() + b"\x00" + context.encode()

    def seal(self, plaintext: bytes, *, purpose: str, context: str) -> bytes:
        nonce = os.urandom(12)
        return MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, plaintext, self._ad(purpose, context))

    def open(self, blob: bytes, *, purpose: str, context: str) -> bytes:
        if not isinstance(blob, bytes) or not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + _OVERHEAD:
            raise SecretBoxError("not_sealed: the stored value is not a sealed value")
        body = blob[len(MAGIC):]
        aead = self._openers.get(body[:4])
        if aead is None:
            raise SecretBoxError(f"sealed_under_another_key: key id {body[:4].hex()}, not one of this box's "
                                 f"({', '.join(k.hex() for k in self._openers)})")
        try:
            return aead.decrypt(body[4:16], body[16:], self._ad(purpose, context))
        except InvalidTag:
            raise SecretBoxError("sealed_value_tampered: it does not open for this purpose and row") from None

    def is_current(self, blob: bytes) -> bool:
        """Sealed under the current key (else: in the clear, or under a previous or unknown key)."""
        return isinstance(blob, bytes) and blob.startswith(MAGIC + self.key_id)

    def is_current_text(self, text: str) -> bool:
        try:
            return text.startswith(TEXT_PREFIX) and self.is_current(MAGIC + _unb64u(text[len(TEXT_PREFIX):]))
        except ValueError:
            return False

    def seal_text(self, plaintext: bytes, *, purpose: str, context: str) -> str:
        return TEXT_PREFIX + _b64u(self.seal(plaintext, purpose=purpose, context=context)[len(MAGIC):])

    def open_text(self, text: str, *, purpose: str, context: str) -> bytes:
        if not isinstance(text, str) or not text.startswith(TEXT_PREFIX):
            raise SecretBoxError("not_sealed: the stored value is not a sealed value")
        try:
            raw = _unb64u(text[len(TEXT_PREFIX):])
        except ValueError:
            raise SecretBoxError("sealed_value_tampered: not base64url") from None
        return self.open(MAGIC + raw, purpose=purpose, context=context)


def sealed_text_len(plaintext_len: int) -> int:
    """The length of seal_text's output for a plaintext of that many bytes."""
    n = plaintext_len + _OVERHEAD
    return len(TEXT_PREFIX) + (n * 8 + 5) // 6
