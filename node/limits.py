"""Every queue, batch, page, retry and wait has its named maximum here.

Units come last in the name (`_ms`, `_s`, `_bytes`, `_count`). Asserts at the bottom relate the
limits to each other; they run at import, so a bad edit fails every test at once.
"""

# --- MPC engine (mpc/) -------------------------------------------------------------------
# --- signer cluster (mpc/) ---------------------------------------------------------------
# --- ledger and store (node/) ------------------------------------------------------------
# --- chains (chains/) --------------------------------------------------------------------
# --- withdrawals, risk, approvals (node/) ------------------------------------------------
# --- API (api/) --------------------------------------------------------------------------
# --- proof of reserves (proofs/) ---------------------------------------------------------
POR_ASSETS_MAX = 64  # assets in one snapshot (balance vector width)
POR_DEPTH_MAX = 32  # tree depth: 2^32 leaves, far above any customer count
POR_PARTS_MAX = 64  # leaves (parts) of one account; the builder uses 2, or 3 to fill the tree
POR_PARTS_MIN = 2  # format rule: s >= 2, so a sibling never shows a customer's whole balance
POR_PROOF_FILE_BYTES_MAX = 1 << 20  # a user proof a verifier will read (a real one is ~6 KB)
POR_HEADER_FILE_BYTES_MAX = 1 << 16  # a signed header file
POR_ASSETS_FILE_BYTES_MAX = 64 << 20  # an assets file (one entry per funded address)
POR_ADDRESSES_MAX = 200_000  # funded addresses in one assets file
POR_ACCOUNTS_MAX = 1 << 30  # accounts in one snapshot: 2 parts each must fit POR_DEPTH_MAX
POR_BALANCE_READ_TIMEOUT_S = 30  # the verifier's re-read of an address balance from a node
POR_SNAPSHOT_INTERVAL_S_MIN = 60  # scheduled snapshots: never more often than this
POR_SNAPSHOTS_LISTED_MAX = 500  # one page of the snapshot history
POR_SIGN_ATTEMPTS_MAX = 3  # reserves signatures: attempts per address before the snapshot fails

# --- relations ---------------------------------------------------------------------------
assert 2 <= POR_PARTS_MIN <= POR_PARTS_MAX
assert POR_ACCOUNTS_MAX * POR_PARTS_MIN <= 1 << POR_DEPTH_MAX
# a 3-part proof at full depth with 8 assets (each path entry: 64 hex + 8 sums of <= 41 chars)
assert POR_PROOF_FILE_BYTES_MAX >= 3 * POR_DEPTH_MAX * (64 + 8 * 41 + 32)
