"""Where a peer's pre-parameters (safe primes, Paillier key) come from.

Production: the engine's `PreParamsPool` in `<data_dir>/preparams/`, sealed with this peer's
sealer and refilled in the background; each keygen/reshare that starts spends one for good, so no two
vaults share a Paillier key. One that ends before it starts (another peer refused it) gives its
set back: nothing computed from it has left the peer. While the pool is empty, ceremonies
needing one are refused (`preparams_not_ready`) rather than waited for. Once the peer holds a
vault, a key generation leaves RECOVERY_RESERVE sets for resharing (`preparams_reserved_for_recovery`);
every keygen and reshare needs the vault quorum's approvals first (mpc/wire/ceremony.py), so no
set is spent by a ceremony nobody approved.
Test: a fixture file named by the config's [test] section — fixture pre-params: never in
production (config.py refuses [test] outside environment = "test").
"""

from __future__ import annotations

from mpc.preparams import PreParams, PreParamsError, PreParamsPool

POOL_SIZE = 2
TAKE_TIMEOUT_S = 1.0
# Sets a key generation leaves in the pool once this peer holds a vault: a reshare away from a
# lost peer (recovery) finds pre-params ready, whatever key generations came before.
RECOVERY_RESERVE = 1
assert RECOVERY_RESERVE < POOL_SIZE, "a key generation could never take a set"


class PreParamsSource:
    def __init__(self, cfg, sealer):
        self._fixture_path = None
        self._fixture = None
        self._pool = None
        fixture = cfg.test.get("preparams_fixture") if cfg.is_test else None
        if fixture:
            self._fixture_path = cfg.path.parent / fixture
            if not self._fixture_path.is_file():
                raise ValueError(f"[test] preparams_fixture {self._fixture_path}: no such file")
        else:
            self._pool = PreParamsPool(cfg.data_dir / "preparams", sealer, POOL_SIZE, party=cfg.name).start()

    def __call__(self) -> PreParams | None:
        """Pre-params for one ceremony, or None while none are ready."""
        if self._fixture_path is not None:
            if self._fixture is None:
                self._fixture = PreParams(self._fixture_path.read_bytes())
            return self._fixture  # fixture pre-params: reused across test ceremonies
        try:
            return self._pool.take(TAKE_TIMEOUT_S)
        except PreParamsError:
            return None

    def give_back(self, pp: PreParams) -> None:
        """Pre-params taken for a ceremony that never started, back into the pool (sealed)."""
        if self._pool is not None:
            self._pool.add(pp)

    def reserved_for_recovery(self) -> bool:
        """True when taking a set now would leave fewer than RECOVERY_RESERVE for a reshare."""
        return self._pool is not None and self._pool.ready() <= RECOVERY_RESERVE

    def ready(self) -> int:
        return 1 if self._fixture_path is not None else self._pool.ready()

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
