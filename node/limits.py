"""Every queue, batch, page, retry and wait has its named maximum here.

Units come last in the name (`_ms`, `_s`, `_bytes`, `_count`). Asserts at the bottom relate the
limits to each other; they run at import, so a bad edit fails every test at once.
"""

# --- MPC engine (mpc/) -------------------------------------------------------------------
MPC_PARTIES_MAX = 16  # parties in one keygen / signing / resharing committee
MPC_SESSION_EVENTS_MAX = 1024  # events queued in the shim per session before it fails
MPC_WIRE_MESSAGE_BYTES_MAX = 4 * 1024 * 1024  # one tss-lib wire message (keygen round 2 ~ 0.3 MB at n=5)
MPC_SESSION_ID_BYTES_MIN = 16
MPC_SESSION_ID_BYTES_MAX = 64
MPC_NEXT_EVENT_TIMEOUT_S_MAX = 60.0  # one poll of a session's event queue
MPC_HD_PATH_DEPTH_MAX = 16  # non-hardened BIP32 levels below the group key
MPC_PREPARAMS_TIMEOUT_S = 600.0  # one safe-prime + Paillier search (10-60 s typical on 2 cores)
MPC_PREPARAMS_POOL_SIZE_MAX = 16  # sealed pre-parameter files kept ready per signer
MPC_SEALED_BYTES_MAX = 16 * 1024 * 1024  # one sealed file (a key share is ~30 KB at n=5)
# --- signer cluster (mpc/) ---------------------------------------------------------------
# --- ledger and store (node/) ------------------------------------------------------------
# --- chains (chains/) --------------------------------------------------------------------
# --- withdrawals, risk, approvals (node/) ------------------------------------------------
# --- API (api/) --------------------------------------------------------------------------
# --- proof of reserves (proofs/) ---------------------------------------------------------

# --- relations ---------------------------------------------------------------------------
# signing has 9 rounds, each at most one broadcast + n-1 direct messages per party
assert MPC_SESSION_EVENTS_MAX >= 10 * MPC_PARTIES_MAX, "a signing session must fit in the event queue"
assert MPC_SESSION_ID_BYTES_MIN >= 16 and MPC_SESSION_ID_BYTES_MAX >= MPC_SESSION_ID_BYTES_MIN
assert MPC_SEALED_BYTES_MAX >= MPC_WIRE_MESSAGE_BYTES_MAX
