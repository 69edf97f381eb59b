"""Every queue, batch, page, retry and wait has its named maximum here.

Units come last in the name (`_ms`, `_s`, `_bytes`, `_count`). Asserts at the bottom relate the
limits to each other; they run at import, so a bad edit fails every test at once.
"""

# --- MPC engine (mpc/) -------------------------------------------------------------------
# --- signer cluster (mpc/) ---------------------------------------------------------------
# --- ledger and store (node/) ------------------------------------------------------------
# --- chains (chains/) --------------------------------------------------------------------
CHAINS_RPC_TIMEOUT_S = 10.0  # every call to a chain node (connect + read)
CHAINS_RPC_RESPONSE_BYTES_MAX = 64 * 1024 * 1024  # a verbose bitcoin block is a few MB
CHAINS_SCAN_BLOCKS_PER_CALL_MAX = 200  # one scan() reads at most this many new blocks
CHAINS_REORG_DEPTH_MAX = 100  # deeper than this: scan() stops and raises for staff
CHAINS_BLOCK_HASHES_KEPT_COUNT = 1000  # recent block hashes kept to find the fork point
CHAINS_CONFIRMATIONS_MAX = 1000  # a configured confirmation depth above this is refused
CHAINS_WATCHED_ADDRESSES_MAX = 1_000_000  # per chain and network
CHAINS_BTC_INPUTS_MAX = 500  # inputs in one transaction we build
CHAINS_BTC_PAYMENTS_PER_BATCH_MAX = 250  # outputs paid by one batched withdrawal
CHAINS_BTC_FEE_RATE_SAT_VB_MIN = 1  # btcd's and bitcoind's default relay floor
CHAINS_BTC_FEE_RATE_SAT_VB_MAX = 2_000  # a fee rate above this is refused (fat finger)
CHAINS_BTC_DUST_SATS = 546  # outputs and change below this are refused / dropped to the fee
CHAINS_BTC_COINBASE_MATURITY_BLOCKS = 100  # consensus: coinbase spendable after 100 blocks
CHAINS_ETH_LOG_BLOCKS_PER_CALL_MAX = 200  # eth_getLogs block range per request
CHAINS_ETH_GAS_LIMIT_MAX = 1_000_000  # gas limit of any transaction we build
CHAINS_ETH_REPLACEMENT_BUMP_PERCENT_MIN = 10  # geth's rule for replacing a pending tx
CHAINS_ETH_NONCE_GAP_MAX = 64  # allocated-but-unbroadcast nonces per address
assert CHAINS_BLOCK_HASHES_KEPT_COUNT > CHAINS_REORG_DEPTH_MAX
assert CHAINS_SCAN_BLOCKS_PER_CALL_MAX >= 1 and CHAINS_ETH_LOG_BLOCKS_PER_CALL_MAX >= 1
assert CHAINS_CONFIRMATIONS_MAX <= CHAINS_BLOCK_HASHES_KEPT_COUNT
assert 1 <= CHAINS_BTC_FEE_RATE_SAT_VB_MIN < CHAINS_BTC_FEE_RATE_SAT_VB_MAX
assert CHAINS_BTC_PAYMENTS_PER_BATCH_MAX + 1 <= CHAINS_BTC_INPUTS_MAX
# --- withdrawals, risk, approvals (node/) ------------------------------------------------
# --- API (api/) --------------------------------------------------------------------------
# --- proof of reserves (proofs/) ---------------------------------------------------------

# --- relations ---------------------------------------------------------------------------
