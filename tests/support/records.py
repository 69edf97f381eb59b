"""A signer peer's durable records (mpc/signer/records.py) for unit tests: real files in a temp
dir, sealed with a test-only KDF cost (argon2id t=1, 1 MiB: never in production)."""

from __future__ import annotations

from mpc import sealing
from mpc.signer.records import SignerRecords
from mpc.wire import requests as rq

FAST_KDF = dict(time_cost=1, memory_kib=1024, parallelism=1)  # test-only KDF cost
PASSPHRASE = "correct horse battery staple"
PEER = "peer-1"


def fast_sealer(key_id: str = "peer-1", environment: str = "test") -> sealing.Sealer:
    return sealing.Sealer(sealing.PassphraseKeyProvider(PASSPHRASE, key_id, **FAST_KDF), environment=environment)


def open_records(data_dir, sealer: sealing.Sealer | None = None, clock_ms=rq.now_ms) -> SignerRecords:
    return SignerRecords.open(data_dir, sealer or fast_sealer(), PEER, clock_ms=clock_ms)


T0_MS = 1_733_570_000_000  # the peer's wall clock in the records tests


class Clock:
    """A wall clock (ms) a test sets."""

    def __init__(self, ms: int = T0_MS):
        self.ms = ms

    def __call__(self) -> int:
        return self.ms
