"""Every queue, batch, page, retry and wait has its named maximum here.

Units come last in the name (`_ms`, `_s`, `_bytes`, `_count`). Asserts at the bottom relate the
limits to each other; they run at import, so a bad edit fails every test at once.
"""

# --- MPC engine (mpc/) -------------------------------------------------------------------
# --- signer cluster (mpc/) ---------------------------------------------------------------
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
# --- withdrawals, risk, approvals (node/) ------------------------------------------------
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
# --- proof of reserves (proofs/) ---------------------------------------------------------

# --- relations ---------------------------------------------------------------------------
assert LEDGER_QUERY_IDS_MAX * 2 < 32766, "an IN (...) lookup fits SQLite's bind parameter limit"
assert WRITER_GROUP_EVENTS_MAX <= LEDGER_BATCH_EVENTS_MAX
assert WRITER_QUEUE_EVENTS_MAX >= WRITER_GROUP_EVENTS_MAX
assert LEDGER_EXPIRE_PER_WRITE_MAX <= LEDGER_BATCH_EVENTS_MAX
assert LEDGER_PAGE_MAX <= LEDGER_QUERY_IDS_MAX
assert STORE_LOCK_TIMEOUT_MS < STORE_STATEMENT_TIMEOUT_MS
assert WRITER_SUBMIT_TIMEOUT_S * 1000 > STORE_LOCK_TIMEOUT_MS
# API
assert API_NONCE_TTL_MS > 2 * API_CLOCK_SKEW_MS, "a nonce must outlive every timestamp that could carry it"
assert API_NONCE_LEN_MIN <= API_NONCE_LEN_MAX
assert API_KEY_CACHE_TTL_MS <= 5_000, "a revoked key must stop working within seconds"
assert API_IDEMPOTENCY_TTL_S >= 24 * 3600, "conventions: idempotent responses kept at least 24 h"
assert API_IDEMPOTENCY_LEASE_S < API_IDEMPOTENCY_TTL_S
assert API_PAGE_LIMIT_MIN <= API_PAGE_LIMIT_DEFAULT <= API_PAGE_LIMIT_MAX
assert API_RATE_LIMIT_BURST_COUNT >= API_RATE_LIMIT_PER_S > 0
assert API_BODY_BYTES_MAX <= API_IDEMPOTENCY_RESPONSE_BYTES_MAX
assert WEBHOOK_BACKOFF_BASE_MS <= WEBHOOK_BACKOFF_MAX_MS
assert WEBHOOK_LEASE_MS > WEBHOOK_HTTP_TIMEOUT_MS, "a lease must outlast the attempt it covers"
assert WEBHOOK_HTTP_TIMEOUT_MS < WEBHOOK_SIGNATURE_TOLERANCE_S * 1000, "a signature must not expire in flight"
