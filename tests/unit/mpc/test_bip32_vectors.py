"""Public (non-hardened) BIP32 derivation in mpc.engine against the published BIP-32 test
vectors (https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki, vectors 1 and 2)."""

from __future__ import annotations

import hashlib

import pytest

from mpc import engine

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def xpub_parts(xpub: str) -> tuple[bytes, bytes]:
    """(chain code, compressed public key) from a Base58Check xpub."""
    n = 0
    for c in xpub:
        n = n * 58 + _B58.index(c)
    raw = n.to_bytes(82, "big")
    payload, check = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == check
    return payload[13:45], payload[45:78]


VECTORS = [
    # (parent xpub, path, child xpub)
    ("xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
     (0,),
     "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH"),
    ("xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
     (1,),
     "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ"),
]


@pytest.mark.parametrize("parent,path,child", VECTORS)
def test_ckdpub_matches_published_vectors(parent, path, child):
    cc, pub = xpub_parts(parent)
    want_cc, want_pub = xpub_parts(child)
    got_pub, got_cc = engine.derive_child_public_key(pub, cc, path)
    assert (got_pub.hex(), got_cc.hex()) == (want_pub.hex(), want_cc.hex())


@pytest.mark.parametrize("index", [2**31, 2**32 - 1, -1])
def test_hardened_or_invalid_index_is_refused(index):
    cc, pub = xpub_parts(VECTORS[0][0])
    with pytest.raises(engine.InvalidSessionRequest) as e:
        engine.derive_child_public_key(pub, cc, (index,))
    assert e.value.code == "hd_index_must_be_non_hardened"
