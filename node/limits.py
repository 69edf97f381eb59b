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

# --- relations ---------------------------------------------------------------------------
