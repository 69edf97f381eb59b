"""Where a peer's pre-parameters (safe primes, Paillier key) come from.

Production: sealed in the data dir; generated in the background at first start (tens of
seconds on 2 cores) and again after each keygen/reshare consumed them, so no two vaults share
a Paillier key. Test: a fixture file named by the config's [test] section — fixture
pre-params: never in production (config.py refuses [test] outside environment = "test").
"""

from __future__ import annotations

import threading

from node import log as nlog

GENERATE_TIMEOUT_S = 600


def _from_bytes(data: bytes):
    from mpc import preparams

    return preparams.PreParams(data)


class PreParamsSource:
    def __init__(self, cfg, store):
        self.cfg = cfg
        self.store = store
        self.log = nlog.get("mpc.signer", peer=cfg.name)
        self._lock = threading.Lock()
        self._generating = False
        fixture = cfg.test.get("preparams_fixture") if cfg.is_test else None
        self._fixture_path = (cfg.path.parent / fixture) if fixture else None
        if self._fixture_path is not None and not self._fixture_path.is_file():
            raise ValueError(f"[test] preparams_fixture {self._fixture_path}: no such file")
        self._fixture = None
        if self._fixture_path is None and self.store.preparams() is None:
            self._generate_in_background()

    def _generate_in_background(self) -> None:
        with self._lock:
            if self._generating:
                return
            self._generating = True

        def work():
            from mpc import preparams

            try:
                pp = preparams.generate(GENERATE_TIMEOUT_S)
                self.store.put_preparams(pp._reveal())
                self.log.info("preparams_ready")
            except Exception as exc:  # retried on the next request; logged, never silent
                self.log.error("preparams_failed", error=str(exc))
            finally:
                with self._lock:
                    self._generating = False

        threading.Thread(target=work, name="preparams", daemon=True).start()

    def __call__(self):
        """The pre-params for the next ceremony, or None while they are being generated."""
        if self._fixture_path is not None:
            if self._fixture is None:
                self._fixture = _from_bytes(self._fixture_path.read_bytes())
            return self._fixture
        data = self.store.preparams()
        if data is None:
            self._generate_in_background()
            return None
        return _from_bytes(data)

    def consumed(self) -> None:
        if self._fixture_path is None:
            self.store.drop_preparams()
            self._generate_in_background()
