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
CLUSTER_PEERS_MAX = 16                      # peers in one cluster config
CLUSTER_ROUND_TIMEOUT_MS_DEFAULT = 30_000   # no progress in a round for this long: abort
CLUSTER_ROUND_TIMEOUT_MS_MAX = 300_000
CLUSTER_ROUND_TIMEOUT_MS_MIN = 200
CLUSTER_LIVENESS_PROBE_MS = 1_000           # while waiting, probe the awaited peers this often
CLUSTER_PROBE_TIMEOUT_MS = 1_000            # a Health probe's deadline
CLUSTER_RPC_TIMEOUT_MS = 10_000             # Deliver / Echo / Join / Start / Abort / Commit deadline
CLUSTER_JOIN_TIMEOUT_MS = 15_000            # a peer verifies the request and prepares its sessions
CLUSTER_ECHO_WAIT_MS = 10_000               # after Done, wait at least this long for the echoes
CLUSTER_ECHO_SEND_ATTEMPTS = 5              # an echo that failed (deadline, unavailable) is resent
CLUSTER_CEREMONY_TIMEOUT_MS = 600_000       # one ceremony attempt, all rounds
CLUSTER_SIGN_ATTEMPTS_MAX = 3               # coordinator retries with another quorum
CLUSTER_ACTIVE_SESSIONS_MAX = 64            # tss sessions hosted by one peer at once
CLUSTER_BUFFERED_MESSAGES_MAX = 256         # per session, received before it started
CLUSTER_RECENT_SESSIONS_MAX = 4_096         # finished session ids remembered (replays are refused)
CLUSTER_RECENT_CEREMONIES_MAX = 256         # ended ceremonies kept for Await / Commit
CLUSTER_SEEN_REQUESTS_MAX = 65_536          # request ids remembered per peer
CLUSTER_DIGESTS_PER_REQUEST_MAX = 64        # bitcoin inputs (one tss session each)
CLUSTER_MESSAGE_BYTES_MAX = 16 * 1024 * 1024  # one gRPC message (keygen rounds carry ~1 MB)
CLUSTER_REQUEST_BYTES_MAX = 4 * 1024 * 1024   # one node-signed request
CLUSTER_REQUEST_AGE_MS_MAX = 300_000        # a signed request older (or further ahead) is refused
CLUSTER_APPROVALS_MAX = 32
CLUSTER_RPC_WORKERS_MAX = 64                # gRPC server threads per peer
CLUSTER_QUARANTINE_ABORTS = 3               # aborts as culprit within the window -> quarantine
CLUSTER_QUARANTINE_WINDOW_S = 600
CLUSTER_QUARANTINE_S = 900
CLUSTER_RATE_WINDOW_S = 3_600               # rate limits are per rolling hour
CLUSTER_RATE_EVENTS_MAX = 100_000           # remembered signing events per peer (bounded window)
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
# signing has 9 rounds, each at most one broadcast + n-1 direct messages per party
assert MPC_SESSION_EVENTS_MAX >= 10 * MPC_PARTIES_MAX, "a signing session must fit in the event queue"
assert MPC_SESSION_ID_BYTES_MIN >= 16 and MPC_SESSION_ID_BYTES_MAX >= MPC_SESSION_ID_BYTES_MIN
assert MPC_SEALED_BYTES_MAX >= MPC_WIRE_MESSAGE_BYTES_MAX
assert CLUSTER_ROUND_TIMEOUT_MS_MIN <= CLUSTER_ROUND_TIMEOUT_MS_DEFAULT <= CLUSTER_ROUND_TIMEOUT_MS_MAX
assert CLUSTER_PROBE_TIMEOUT_MS <= CLUSTER_LIVENESS_PROBE_MS < CLUSTER_ROUND_TIMEOUT_MS_DEFAULT
assert CLUSTER_ROUND_TIMEOUT_MS_MAX <= CLUSTER_CEREMONY_TIMEOUT_MS
assert CLUSTER_REQUEST_BYTES_MAX < CLUSTER_MESSAGE_BYTES_MAX
assert CLUSTER_DIGESTS_PER_REQUEST_MAX <= CLUSTER_ACTIVE_SESSIONS_MAX
assert CLUSTER_SIGN_ATTEMPTS_MAX >= 2  # one retry with a new quorum at least
assert CLUSTER_QUARANTINE_ABORTS >= 2  # one abort alone never quarantines a peer
assert CLUSTER_RECENT_CEREMONIES_MAX <= CLUSTER_RECENT_SESSIONS_MAX  # a pruned ceremony's sessions are still known as finished
