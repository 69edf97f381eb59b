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
# Argon2id cost of a passphrase-wrapped data key (mpc/sealing.py). A sealed file carries its own
# cost, read before anything is authenticated: it is bounded before argon2 runs, so a tampered
# file cannot make a peer allocate gigabytes at start. Defaults: RFC 9106's second recommendation.
MPC_KDF_TIME_COST_DEFAULT = 3
MPC_KDF_MEMORY_KIB_DEFAULT = 64 * 1024  # 64 MiB
MPC_KDF_PARALLELISM_DEFAULT = 4
MPC_KDF_TIME_COST_MAX = 16
MPC_KDF_MEMORY_KIB_MAX = 256 * 1024  # 256 MiB
MPC_KDF_PARALLELISM_MAX = 16
# --- signer cluster (mpc/) ---------------------------------------------------------------
CLUSTER_PEERS_MAX = 16                      # peers in one cluster config
CLUSTER_ROUND_TIMEOUT_MS_DEFAULT = 30_000   # no progress in a round for this long: abort
CLUSTER_ROUND_TIMEOUT_MS_MAX = 300_000
CLUSTER_ROUND_TIMEOUT_MS_MIN = 200
CLUSTER_LIVENESS_PROBE_MS = 1_000           # while waiting, probe the awaited peers this often
CLUSTER_PROBE_TIMEOUT_MS = 1_000            # a Health probe's deadline
CLUSTER_PROBE_KNOWN_GOOD_TIMEOUT_MS = 3_000  # ... for a peer that answered its last probe (may be reconnecting)
CLUSTER_RPC_TIMEOUT_MS = 10_000             # Deliver / Echo / Join / Start / Abort / Commit deadline
CLUSTER_JOIN_TIMEOUT_MS = 15_000            # a peer verifies the request and prepares its sessions
CLUSTER_START_DEADLINE_MS = CLUSTER_JOIN_TIMEOUT_MS + 2 * CLUSTER_RPC_TIMEOUT_MS  # joined, no Start by then: abort
CLUSTER_START_SWEEP_MS = 1_000  # how often a peer aborts the ceremonies whose Start can no longer come
CLUSTER_ECHO_WAIT_MS = 10_000               # after Done, wait at least this long for the echoes
CLUSTER_ECHO_SEND_ATTEMPTS = 5              # an echo that failed (deadline, unavailable) is resent
CLUSTER_CEREMONY_TIMEOUT_MS = 600_000       # one ceremony attempt, all rounds
CLUSTER_SIGN_ATTEMPTS_MAX = 3               # coordinator retries with another quorum
CLUSTER_ACTIVE_SESSIONS_MAX = 128           # tss sessions hosted by one peer at once
CLUSTER_SESSIONS_PER_COORDINATOR_MAX = 64   # ... of them for one coordinator (prepared or running)
CLUSTER_ENVELOPES_PER_PEER_SESSION_MAX = 1_024  # envelopes accepted from one peer in one session
CLUSTER_ECHOES_PER_PEER_SESSION_MAX = 1_024  # echoes held from one peer in one session
CLUSTER_BLAME_AWAIT_MS = 3_000              # after an abort, the coordinator asks each peer what it saw
CLUSTER_AWAITS_PER_PEER_MAX = 8             # Await calls one peer may have waiting at another at once
CLUSTER_BUFFERED_MESSAGES_MAX = 256         # per session, received before it started
CLUSTER_RECENT_SESSIONS_MAX = 4_096         # finished session ids remembered (replays are refused)
CLUSTER_RECENT_CEREMONIES_MAX = 256         # ended ceremonies kept for Await / Commit
CLUSTER_SEEN_REQUESTS_MAX = 65_536          # request ids remembered per peer
CLUSTER_DIGESTS_PER_REQUEST_MAX = 64        # bitcoin inputs (one tss session each)
CLUSTER_MESSAGE_BYTES_MAX = 16 * 1024 * 1024  # one gRPC message (keygen rounds carry ~1 MB)
CLUSTER_REQUEST_BYTES_MAX = 4 * 1024 * 1024   # one node-signed request
CLUSTER_REQUEST_AGE_MS_MAX = 300_000        # a signed request older (or further ahead) is refused
CLUSTER_APPROVALS_MAX = 32
CLUSTER_INTENT_ID_CHARS_MAX = 128           # an intent id in a signing request (each peer records it per version)
# Proven input amounts (issue 14): each Bitcoin input's previous transaction, stripped, in the
# request. A standard transaction (weight <= 400,000) is at most 100,000 bytes stripped; a
# larger parent (only a miner can make one) is allowed when it is the request's only one (its
# deposit is swept alone), up to any consensus-valid size (4,000,000 weight units / 4).
BTC_STRIPPED_TX_BYTES_CONSENSUS_MAX = 1_000_000
CLUSTER_CHILD_KEYS_CACHED_MAX = 65_536      # derived child public keys a peer keeps (33 bytes each + path)
CLUSTER_PREV_TX_BYTES_MAX = 100_000         # one previous transaction among several
# All of one request's: what a peer walks at most (its check time, bench/cluster.py), and
# enough for any one parent alone.
CLUSTER_PREV_TXS_BYTES_MAX = BTC_STRIPPED_TX_BYTES_CONSENSUS_MAX
CLUSTER_RPC_WORKERS_MAX = 64                # gRPC server threads per peer
CLUSTER_QUARANTINE_ABORTS = 3               # aborts as culprit within the window -> quarantine
CLUSTER_QUARANTINE_WINDOW_S = 600
CLUSTER_QUARANTINE_S = 900
CLUSTER_CONFLICT_S = 3_600                  # an unproven accusation keeps the pair apart this long
CLUSTER_CONFLICTS_MAX = CLUSTER_PEERS_MAX * (CLUSTER_PEERS_MAX - 1) // 2  # every pair at most once
CLUSTER_RATE_WINDOW_S = 3_600               # rate limits are per rolling hour
CLUSTER_RATE_EVENTS_MAX = 100_000           # admitted requests per rolling hour (a policy may allow no more)
# A peer's durable records (mpc/signer/records.py): an append-only, MAC-chained log.
RECORDS_LINE_BYTES_MAX = 8_192              # one record line (an admitted request is < 600 bytes, an intent_signed < 6 KiB)
RECORDS_SIGNED_KEPT_MS = 2 * CLUSTER_REQUEST_AGE_MS_MAX + 60_000  # a signed request id is remembered this long
# Spend-once (issue 14): every transaction version a peer joined to sign, per intent, kept this
# long after the intent's latest version. Approvals do not expire yet; an approval max age, when
# it comes, must stay below this (so an intent is remembered while its approvals can sign).
RECORDS_INTENT_KEPT_MS = 35 * 24 * 3600 * 1000  # 35 days: past the longest vault delay (asserted below)
RECORDS_INTENT_VERSIONS_MAX = 16            # versions of one intent (fee bumps); more: intent_versions_exceeded
RECORDS_INTENT_VERSIONS_LIVE_MAX = 262_144  # versions of all intents kept; more: intent_records_full (never forgotten early)
RECORDS_LIVE_MAX = 1 + CLUSTER_RATE_EVENTS_MAX + CLUSTER_SEEN_REQUESTS_MAX + RECORDS_INTENT_VERSIONS_LIVE_MAX  # snapshot + admitted + signed + intent_signed
RECORDS_PER_FILE_MAX = 2 * RECORDS_LIVE_MAX  # a log is compacted to its live records past 2x them, and past this always
RECORDS_COMPACT_AFTER_MIN = 4_096           # ... but a smaller one is not worth rewriting
RECORDS_LOG_BYTES_MAX = 64 + (RECORDS_PER_FILE_MAX + 1) * RECORDS_LINE_BYTES_MAX  # a larger log is refused at start
RECORDS_KEY_FILE_BYTES_MAX = 4_096          # the sealed 32-byte mac key (~400 bytes)
# --- ledger and store (node/) ------------------------------------------------------------
LEDGER_BATCH_EVENTS_MAX = 8190  # events in one create_transfers/create_accounts call (TigerBeetle's)
LEDGER_ID_CHARS_MAX = 64  # transfer, customer, sub-account and wallet ids
LEDGER_USER_DATA_CHARS_MAX = 128
LEDGER_TIMEOUT_S_MAX = 2**31 - 1  # a pending transfer's timeout
LEDGER_EXPIRE_PER_WRITE_MAX = 1024  # due pending transfers expired at the start of one write
LEDGER_QUERY_IDS_MAX = 900  # ids per IN (...) lookup (SQLite allows 32766 bind parameters)
LEDGER_PAGE_MAX = 500  # rows per page of a listing (api: limit 1..500)
STORE_BUSY_TIMEOUT_MS = 10_000  # SQLite waits this long for the write lock
STORE_LOCK_TIMEOUT_MS = 10_000  # PostgreSQL waits this long for a row lock (the chain head)
STORE_STATEMENT_TIMEOUT_MS = 60_000  # PostgreSQL statement deadline
STORE_CONNECT_TIMEOUT_S = 10
STORE_POOL_SIZE = 8
STORE_POOL_OVERFLOW_MAX = 8
STORE_POOL_TIMEOUT_S = 30
WRITER_QUEUE_EVENTS_MAX = 65_536  # events waiting for the group-commit writer
WRITER_GROUP_EVENTS_MAX = LEDGER_BATCH_EVENTS_MAX  # events one group commit takes
WRITER_SUBMIT_TIMEOUT_S = 30  # a caller waits this long for its group to commit
AUDIT_VERIFY_FETCH_ROWS = 1000  # journal rows streamed per fetch while verifying
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
CHAINS_BTC_PARSED_CACHED_MAX = 16  # unsigned transactions kept parsed (a peer's check reads one three times)
CHAINS_BTC_DUST_SATS = 546  # outputs and change below this are refused / dropped to the fee
CHAINS_BTC_COINBASE_MATURITY_BLOCKS = 100  # consensus: coinbase spendable after 100 blocks
CHAINS_ETH_LOG_BLOCKS_PER_CALL_MAX = 200  # eth_getLogs block range per request
CHAINS_ETH_GAS_LIMIT_MAX = 1_000_000  # gas limit of any transaction we build
CHAINS_ETH_REPLACEMENT_BUMP_PERCENT_MIN = 10  # geth's rule for replacing a pending tx
CHAINS_ETH_NONCE_GAP_MAX = 64  # allocated-but-unbroadcast nonces per address
# A peer signs Ethereum nonce n only with evidence: a transaction from the same sender signed by
# the vault's key at a nonce >= n - W (none needed below W), so no signature far ahead of the
# vault's real nonce can be collected (issue 14). Above the node's open nonces: its own
# transactions always find evidence among what it signed.
CLUSTER_ETH_NONCE_WINDOW = CHAINS_ETH_NONCE_GAP_MAX + 1
CLUSTER_NONCE_EVIDENCE_BYTES_MAX = 4_096  # one signed transaction of ours (a token transfer is ~180 bytes)
assert CHAINS_BLOCK_HASHES_KEPT_COUNT > CHAINS_REORG_DEPTH_MAX
assert CHAINS_SCAN_BLOCKS_PER_CALL_MAX >= 1 and CHAINS_ETH_LOG_BLOCKS_PER_CALL_MAX >= 1
assert CHAINS_CONFIRMATIONS_MAX <= CHAINS_BLOCK_HASHES_KEPT_COUNT
assert 1 <= CHAINS_BTC_FEE_RATE_SAT_VB_MIN < CHAINS_BTC_FEE_RATE_SAT_VB_MAX
assert CHAINS_BTC_PAYMENTS_PER_BATCH_MAX + 1 <= CHAINS_BTC_INPUTS_MAX
# --- withdrawals, risk, approvals (node/) ------------------------------------------------
WITHDRAWAL_BATCH_MAX = 64  # withdrawals one pipeline pass takes per status
WITHDRAWAL_SIGN_ATTEMPTS_MAX = 5  # signing refusals/timeouts before a withdrawal fails
WITHDRAWAL_BROADCAST_ATTEMPTS_MAX = 10  # broadcast errors before a withdrawal fails
WITHDRAWAL_STUCK_AGE_S = 1800  # a broadcast tx still unmined after this long is fee-bumped (replaced)
WITHDRAWAL_FEE_BUMPS_MAX = 3  # replacements per withdrawal; then it waits for staff (needs_staff)
WITHDRAWAL_APPROVALS_MAX = 32  # approvals kept per withdrawal (CLUSTER_APPROVALS_MAX bounds peers)
WITHDRAWAL_REASON_CHARS_MAX = 512  # a sub_status / reason text
WITHDRAWAL_WORKER_POLL_S = 0.2  # the worker's idle wait between passes
WITHDRAWAL_LIST_MAX = 500  # rows per listing (review queue, withdrawals)
# A timed approval's signed time may be this far from the receiver's clock (node at approval,
# peers at signing: ahead only); further is refused (approval_time_out_of_range).
APPROVAL_CLOCK_SKEW_MS_MAX = 120_000
VAULT_DELAY_S_MAX = 30 * 24 * 3600  # a cold vault's delay after its quorum (node and peer policy)
# A peer's [approvals] age_s_max (approval expiry, issue 14) must leave a delayed vault this long
# to sign after its delay, and end before the peer forgets the intent (RECORDS_INTENT_KEPT_MS).
APPROVAL_AGE_MARGIN_S = 24 * 3600
WITHDRAWAL_PEER_DELAY_RETRY_S = 10  # a peer refused with delay_not_elapsed: ask again after this
RISK_POLICY_BYTES_MAX = 256 * 1024  # a policy file
RISK_LIST_ENTRIES_MAX = 1_000_000  # addresses in one sanctions / block list file
RISK_LIST_FILE_BYTES_MAX = 64 * 1024 * 1024
RISK_HISTORY_MAX = 1_000  # past withdrawals the anomaly score looks at
RISK_WINDOW_DAY_S = 24 * 3600
RISK_WINDOW_MONTH_S = 30 * 24 * 3600
RISK_POLICY_APPROVALS_MIN = 2  # a policy change needs this many approver signatures
# --- API (api/) --------------------------------------------------------------------------
API_CLOCK_SKEW_MS = 30_000  # a signed request's X-Timestamp may be this far from our clock
API_NONCE_LEN_MIN = 16
API_NONCE_LEN_MAX = 64
# A nonce is remembered for longer than the whole window it could be replayed in (both sides of
# the clock), then purged; the rate limit bounds how many rows one key can hold meanwhile.
API_NONCE_TTL_MS = 2 * API_CLOCK_SKEW_MS + 10_000
API_NONCE_PURGE_BATCH_COUNT = 1_000  # expired nonces deleted per purge (each auth may purge once)
API_NONCE_PURGE_EVERY_COUNT = 100  # one purge per this many accepted requests, per process
API_BODY_BYTES_MAX = 256 * 1024  # a request body larger than this is refused (413)
API_HEADER_KEY_ID_LEN_MAX = 64
API_SIGNATURE_HEADER_LEN_MAX = 128  # base64url of 64 bytes is 86 chars
API_IDEMPOTENCY_KEY_LEN_MAX = 255
API_IDEMPOTENCY_TTL_S = 48 * 3600  # responses are replayable for at least 24 h (conventions)
API_IDEMPOTENCY_LEASE_S = 60  # an in-progress record older than this may be taken over (crash)
API_IDEMPOTENCY_PURGE_BATCH_COUNT = 1_000
API_HOUSEKEEPING_INTERVAL_S = 60  # purge of expired idempotency records and nonces
API_IDEMPOTENCY_RESPONSE_BYTES_MAX = 1024 * 1024  # stored replay bodies (pages are bounded)
API_PAGE_LIMIT_MIN = 1
API_PAGE_LIMIT_DEFAULT = 100
API_PAGE_LIMIT_MAX = 500
API_CURSOR_LEN_MAX = 256
API_RATE_LIMIT_PER_S = 100  # sustained requests per second per API key, per API replica
API_RATE_LIMIT_BURST_COUNT = 200  # bucket size
API_RATE_LIMIT_KEYS_TRACKED_MAX = 100_000  # buckets kept in memory (least recently used dropped)
API_KEY_NAME_LEN_MAX = 128
# A replica caches API key lookups this long: a revocation reaches every replica within it.
API_KEY_CACHE_TTL_MS = 1_000
API_KEY_CACHE_ENTRIES_MAX = 10_000
API_KEYS_PER_CLIENT_MAX = 100
API_EXTERNAL_ID_LEN_MAX = 128
# Nonces are written by one thread per replica in group commits (api/nonces.py): a request
# waits at most API_NONCE_WAIT_MS for its batch's commit (503 after), the queue is bounded.
API_NONCE_BATCH_MAX = 256  # sightings per transaction
API_NONCE_QUEUE_MAX = 4_096  # waiting sightings per replica; beyond: 503 server_busy
API_NONCE_WAIT_MS = 5_000
WEBHOOK_ENDPOINTS_PER_CLIENT_MAX = 16
WEBHOOK_URL_LEN_MAX = 2048
WEBHOOK_EVENT_TYPES_PER_ENDPOINT_MAX = 32
WEBHOOK_ATTEMPTS_MAX = 15  # then the delivery is `failed` (resend through the API)
WEBHOOK_BACKOFF_BASE_MS = 5_000  # attempt n waits base * 2**(n-1), capped, with jitter
WEBHOOK_BACKOFF_MAX_MS = 6 * 3600 * 1000
WEBHOOK_HTTP_TIMEOUT_MS = 10_000  # connect + read + write for one delivery attempt
WEBHOOK_LEASE_MS = 6 * WEBHOOK_HTTP_TIMEOUT_MS  # a claimed delivery is retaken after this
WEBHOOK_BATCH_COUNT = 32  # deliveries claimed per worker pass
WEBHOOK_POLL_MS = 500  # worker idle poll
WEBHOOK_SIGNATURE_TOLERANCE_S = 300  # receivers reject older signatures (conventions)
WEBHOOK_RESPONSE_BYTES_KEPT_MAX = 512  # of a receiver's response body, for the deliveries list
WEBHOOK_PAYLOAD_BYTES_MAX = 64 * 1024
# The node process (api/node_root.py): background workers as bounded threads.
NODE_WORKERS_MAX = 8  # worker threads besides the API's and the webhook worker
NODE_WORKER_INTERVAL_MAX_S = 3600  # a configured pass interval
NODE_SHUTDOWN_DEADLINE_S = 30  # in-flight requests and worker passes finish within this on SIGTERM
# --- local development system (api/dev.py) ------------------------------------------------
DEV_KEYGEN_DEADLINE_S = 1800  # first start: every peer's pre-parameters + DKG on a busy 2-core machine
DEV_PEER_READY_DEADLINE_S = 120  # a signer process answering /health after it starts
DEV_POLL_S = 2.0
DEV_CHAIN_READY_DEADLINE_S = 60  # btcd / Anvil answering RPC after they start
DEV_CHAIN_POLL_S = 0.2
DEV_CHAIN_STOP_DEADLINE_S = 15  # SIGTERM, then SIGKILL
DEV_CHAIN_RPC_TIMEOUT_S = 10
DEV_FUND_BTC_SATS_MAX = 50 * 100_000_000  # one faucet payment
DEV_FUND_ETH_WEI_MAX = 1_000 * 10**18
DEV_MINE_BLOCKS_MAX = 1_000  # blocks mined by one dev command
DEV_WEBHOOK_BODY_BYTES_MAX = 1024 * 1024  # the dev webhook receiver's request bodies
DEV_WEBHOOK_READ_TIMEOUT_S = 10  # the dev webhook receiver's socket reads
# --- proof of reserves (proofs/) ---------------------------------------------------------
POR_ASSETS_MAX = 64  # assets in one snapshot (balance vector width)
POR_DEPTH_MAX = 32  # tree depth: 2^32 leaves, far above any customer count
POR_PARTS_MAX = 64  # leaves (parts) of one account; the builder uses 2, or 3 to fill the tree
POR_PARTS_MIN = 2  # format rule: s >= 2, so a sibling never shows a customer's whole balance
POR_PROOF_FILE_BYTES_MAX = 1 << 20  # a user proof a verifier will read (depth 21 x 8 assets: ~9 KB, ~7 KB compact)
POR_HEADER_FILE_BYTES_MAX = 1 << 16  # a signed header file
POR_ASSETS_FILE_BYTES_MAX = 64 << 20  # an assets file (one entry per funded address)
POR_ADDRESSES_MAX = 200_000  # funded addresses in one assets file
POR_ACCOUNTS_MAX = 1 << 30  # accounts in one snapshot: 2 parts each must fit POR_DEPTH_MAX
POR_BALANCE_READ_TIMEOUT_S = 30  # the verifier's re-read of an address balance from a node
POR_SNAPSHOT_INTERVAL_S_MIN = 60  # scheduled snapshots: never more often than this
POR_SNAPSHOTS_LISTED_MAX = 1000  # one read of the snapshot history (an API page + 1 to see if more follow)
POR_SIGN_ATTEMPTS_MAX = 3  # reserves signatures: attempts per address before the snapshot fails
POR_BTC_TXS_PAGE = 1000  # searchrawtransactions page when re-reading an address's balance
POR_BTC_TXS_MAX = 100_000  # transactions of one address the verifier will read
POR_TREES_CACHED = 2  # snapshot trees kept loaded (memory-mapped) to serve proofs
POR_FREEZE_ATTEMPTS_MAX = 5  # reads of liabilities + heights until one instant is seen consistently
POR_RESERVES_PATHS_PER_REQUEST_MAX = 64  # addresses signed in one reserves request to the cluster
POR_ANNOUNCE_ENDPOINTS_MAX = 100_000  # webhook endpoints read to find who gets reserves.snapshot
POR_OWNER_ROWS_MAX = 100  # journal rows read to find which API client created a customer
POR_OWNERS_CACHED_MAX = 100_000  # customer -> owning client entries the API keeps
POR_ETH_BALANCES_PER_BATCH = 100  # balance reads at the snapshot block in one JSON-RPC batch

# --- deposits and sweeps (node/deposits/) -----------------------------------------------
DEPOSITS_SYNC_BATCH_MAX = 256  # deposits one sync write books (one store write, <= 4 transfers each)
DEPOSITS_SYNC_PASSES_MAX = 8  # sync writes per chain per call (then the worker's pipeline gets its turn)
DEPOSITS_PAGE_MAX = 500  # rows per listing of deposit addresses / deposits
DEPOSITS_ADDRESSES_PER_SUB_ACCOUNT_MAX = 1_000  # deposit addresses one sub-account may hold per chain family
DEPOSITS_ISSUE_ATTEMPTS_MAX = 8  # tries at the next index when two issuers race for it
DEPOSITS_SWEEPS_PER_PASS_MAX = 16  # sweeps (and gas top-ups) one sweeper pass submits
# --- relations ---------------------------------------------------------------------------
assert DEV_KEYGEN_DEADLINE_S > DEV_PEER_READY_DEADLINE_S > DEV_POLL_S
assert DEV_CHAIN_READY_DEADLINE_S > DEV_CHAIN_RPC_TIMEOUT_S > DEV_CHAIN_POLL_S
# signing has 9 rounds, each at most one broadcast + n-1 direct messages per party
assert MPC_SESSION_EVENTS_MAX >= 10 * MPC_PARTIES_MAX, "a signing session must fit in the event queue"
assert MPC_SESSION_ID_BYTES_MIN >= 16 and MPC_SESSION_ID_BYTES_MAX >= MPC_SESSION_ID_BYTES_MIN
assert MPC_SEALED_BYTES_MAX >= MPC_WIRE_MESSAGE_BYTES_MAX
assert LEDGER_QUERY_IDS_MAX * 2 < 32766, "an IN (...) lookup fits SQLite's bind parameter limit"
assert WRITER_GROUP_EVENTS_MAX <= LEDGER_BATCH_EVENTS_MAX
assert WRITER_QUEUE_EVENTS_MAX >= WRITER_GROUP_EVENTS_MAX
assert LEDGER_EXPIRE_PER_WRITE_MAX <= LEDGER_BATCH_EVENTS_MAX
assert LEDGER_PAGE_MAX <= LEDGER_QUERY_IDS_MAX
assert STORE_LOCK_TIMEOUT_MS < STORE_STATEMENT_TIMEOUT_MS
assert WRITER_SUBMIT_TIMEOUT_S * 1000 > STORE_LOCK_TIMEOUT_MS
# signing has 9 rounds, each at most one broadcast + n-1 direct messages per party
assert MPC_SESSION_EVENTS_MAX >= 10 * MPC_PARTIES_MAX, "a signing session must fit in the event queue"
assert MPC_SESSION_ID_BYTES_MIN >= 16 and MPC_SESSION_ID_BYTES_MAX >= MPC_SESSION_ID_BYTES_MIN
assert MPC_SEALED_BYTES_MAX >= MPC_WIRE_MESSAGE_BYTES_MAX
assert 1 <= MPC_KDF_TIME_COST_DEFAULT <= MPC_KDF_TIME_COST_MAX
assert 1 <= MPC_KDF_PARALLELISM_DEFAULT <= MPC_KDF_PARALLELISM_MAX
# argon2 needs m >= 8p; the maximum leaves room to raise the default cost later (4x)
assert 8 * MPC_KDF_PARALLELISM_MAX <= MPC_KDF_MEMORY_KIB_MAX
assert 8 * MPC_KDF_PARALLELISM_DEFAULT <= 4 * MPC_KDF_MEMORY_KIB_DEFAULT <= MPC_KDF_MEMORY_KIB_MAX
assert CLUSTER_ROUND_TIMEOUT_MS_MIN <= CLUSTER_ROUND_TIMEOUT_MS_DEFAULT <= CLUSTER_ROUND_TIMEOUT_MS_MAX
assert CLUSTER_PROBE_TIMEOUT_MS <= CLUSTER_LIVENESS_PROBE_MS < CLUSTER_ROUND_TIMEOUT_MS_DEFAULT
assert CLUSTER_PROBE_TIMEOUT_MS <= CLUSTER_PROBE_KNOWN_GOOD_TIMEOUT_MS < CLUSTER_JOIN_TIMEOUT_MS
assert CLUSTER_ROUND_TIMEOUT_MS_MAX <= CLUSTER_CEREMONY_TIMEOUT_MS
assert CLUSTER_START_DEADLINE_MS > CLUSTER_JOIN_TIMEOUT_MS + CLUSTER_RPC_TIMEOUT_MS  # the coordinator's Join fan-out, then its Start
assert CLUSTER_REQUEST_BYTES_MAX < CLUSTER_MESSAGE_BYTES_MAX
assert CLUSTER_DIGESTS_PER_REQUEST_MAX <= CLUSTER_SESSIONS_PER_COORDINATOR_MAX
# one coordinator (a rogue one holding joined sessions) leaves room for a full request of another
assert CLUSTER_SESSIONS_PER_COORDINATOR_MAX + CLUSTER_DIGESTS_PER_REQUEST_MAX <= CLUSTER_ACTIVE_SESSIONS_MAX
assert CLUSTER_PREV_TX_BYTES_MAX <= CLUSTER_PREV_TXS_BYTES_MAX
assert CLUSTER_ETH_NONCE_WINDOW > CHAINS_ETH_NONCE_GAP_MAX, "the node's open nonces always sit inside the window"
assert CLUSTER_PREV_TXS_BYTES_MAX >= BTC_STRIPPED_TX_BYTES_CONSENSUS_MAX, "any deposit can be swept (alone)"
# the previous transactions travel as hex, beside at most 1 MiB of everything else
assert 2 * CLUSTER_PREV_TXS_BYTES_MAX + 1024 * 1024 <= CLUSTER_REQUEST_BYTES_MAX
assert CLUSTER_SIGN_ATTEMPTS_MAX >= 2  # one retry with a new quorum at least
assert CLUSTER_QUARANTINE_ABORTS >= 2  # one abort alone never quarantines a peer
assert CLUSTER_RECENT_CEREMONIES_MAX <= CLUSTER_RECENT_SESSIONS_MAX  # a pruned ceremony's sessions are still known as finished
# records: a request is accepted within +-CLUSTER_REQUEST_AGE_MS_MAX of its created_at_ms, so a
# copy may arrive up to twice that after the first: its id (and digest) must still be known then
assert CLUSTER_RATE_WINDOW_S * 1000 >= 2 * CLUSTER_REQUEST_AGE_MS_MAX, "request_id_reused holds while a request is valid"
assert RECORDS_SIGNED_KEPT_MS > 2 * CLUSTER_REQUEST_AGE_MS_MAX, "request_already_signed holds while a request is valid"
assert RECORDS_SIGNED_KEPT_MS <= CLUSTER_RATE_WINDOW_S * 1000  # so signed ids within it were admitted within the hour
assert CLUSTER_SEEN_REQUESTS_MAX >= 1 and CLUSTER_RATE_EVENTS_MAX >= 1
assert RECORDS_PER_FILE_MAX >= 2 * RECORDS_LIVE_MAX, "a compaction frees at least half a file: appends stay O(1) amortised"
assert 1 <= RECORDS_COMPACT_AFTER_MIN <= RECORDS_PER_FILE_MAX
assert RECORDS_LOG_BYTES_MAX >= 64 + (RECORDS_PER_FILE_MAX + 1) * RECORDS_LINE_BYTES_MAX
assert 1_024 <= RECORDS_LINE_BYTES_MAX <= CLUSTER_REQUEST_BYTES_MAX
assert RECORDS_KEY_FILE_BYTES_MAX <= MPC_SEALED_BYTES_MAX
# an intent_signed line: up to CLUSTER_DIGESTS_PER_REQUEST_MAX outpoints "<64 hex>:<vout>" (< 80
# bytes each in JSON), ids of <= 128 characters, a payload hash and a time
assert CLUSTER_DIGESTS_PER_REQUEST_MAX * 80 + 3 * CLUSTER_INTENT_ID_CHARS_MAX + 512 <= RECORDS_LINE_BYTES_MAX, "an intent_signed record fits a line"
assert RECORDS_INTENT_KEPT_MS > VAULT_DELAY_S_MAX * 1000, "a delayed vault's intent is remembered past its delay"
assert (VAULT_DELAY_S_MAX + APPROVAL_AGE_MARGIN_S) * 1000 < RECORDS_INTENT_KEPT_MS, "every delay allows some approval age"
assert RECORDS_INTENT_KEPT_MS > RECORDS_SIGNED_KEPT_MS
assert 1 + WITHDRAWAL_FEE_BUMPS_MAX <= RECORDS_INTENT_VERSIONS_MAX <= RECORDS_INTENT_VERSIONS_LIVE_MAX, "the node's own fee bumps always sign"
assert 2 <= POR_PARTS_MIN <= POR_PARTS_MAX
assert POR_BTC_TXS_PAGE <= POR_BTC_TXS_MAX
assert POR_RESERVES_PATHS_PER_REQUEST_MAX <= CLUSTER_DIGESTS_PER_REQUEST_MAX  # the peers refuse more
assert POR_SNAPSHOTS_LISTED_MAX > API_PAGE_LIMIT_MAX  # a full API page still learns whether more follow
assert POR_ACCOUNTS_MAX * POR_PARTS_MIN <= 1 << POR_DEPTH_MAX
# a 3-part proof at full depth with 8 assets (each path entry: 64 hex + 8 sums of <= 41 chars)
assert POR_PROOF_FILE_BYTES_MAX >= 3 * POR_DEPTH_MAX * (64 + 8 * 41 + 32)
# API
assert API_NONCE_TTL_MS > 2 * API_CLOCK_SKEW_MS, "a nonce must outlive every timestamp that could carry it"
assert API_NONCE_LEN_MIN <= API_NONCE_LEN_MAX
assert API_KEY_CACHE_TTL_MS <= 5_000, "a revoked key must stop working within seconds"
assert API_IDEMPOTENCY_TTL_S >= 24 * 3600, "conventions: idempotent responses kept at least 24 h"
assert API_IDEMPOTENCY_LEASE_S < API_IDEMPOTENCY_TTL_S
assert API_PAGE_LIMIT_MIN <= API_PAGE_LIMIT_DEFAULT <= API_PAGE_LIMIT_MAX
assert WITHDRAWAL_WORKER_POLL_S <= NODE_WORKER_INTERVAL_MAX_S and WEBHOOK_HTTP_TIMEOUT_MS < NODE_SHUTDOWN_DEADLINE_S * 1000
assert API_RATE_LIMIT_BURST_COUNT >= API_RATE_LIMIT_PER_S > 0
assert API_BODY_BYTES_MAX <= API_IDEMPOTENCY_RESPONSE_BYTES_MAX
assert 0 < API_NONCE_BATCH_MAX <= API_NONCE_QUEUE_MAX
assert WEBHOOK_BACKOFF_BASE_MS <= WEBHOOK_BACKOFF_MAX_MS
assert WEBHOOK_LEASE_MS > WEBHOOK_HTTP_TIMEOUT_MS, "a lease must outlast the attempt it covers"
assert WEBHOOK_HTTP_TIMEOUT_MS < WEBHOOK_SIGNATURE_TOLERANCE_S * 1000, "a signature must not expire in flight"
# withdrawals
assert WITHDRAWAL_APPROVALS_MAX <= CLUSTER_APPROVALS_MAX, "the node never sends more approvals than a peer reads"
assert APPROVAL_CLOCK_SKEW_MS_MAX <= CLUSTER_REQUEST_AGE_MS_MAX, "approval times are held to at least the request clock"
assert 0 < WITHDRAWAL_PEER_DELAY_RETRY_S <= VAULT_DELAY_S_MAX
assert RISK_WINDOW_DAY_S < RISK_WINDOW_MONTH_S
assert WITHDRAWAL_LIST_MAX <= LEDGER_PAGE_MAX
assert WITHDRAWAL_STUCK_AGE_S > WITHDRAWAL_WORKER_POLL_S, "a transaction gets at least one pass before it counts as stuck"
# deposits
assert DEPOSITS_PAGE_MAX <= LEDGER_PAGE_MAX
assert DEPOSITS_SYNC_BATCH_MAX * 4 <= LEDGER_BATCH_EVENTS_MAX, "a deposit books at most 4 transfers in one sync write"
assert DEPOSITS_SWEEPS_PER_PASS_MAX <= WITHDRAWAL_BATCH_MAX

assert 0 < CLUSTER_START_SWEEP_MS < CLUSTER_START_DEADLINE_MS

# Key ceremonies (mpc/wire/ceremony.py): an approval counts until this long after the ceremony's
# delay has passed since it was signed; an older one is refused (approvals_expired), so approvals
# of a key generation cannot be replayed for ever.
CEREMONY_APPROVAL_VALID_MS = 7 * 24 * 3600 * 1000
assert CEREMONY_APPROVAL_VALID_MS > APPROVAL_CLOCK_SKEW_MS_MAX
