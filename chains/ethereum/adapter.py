"""The Ethereum chain adapter (web3.py): EIP-55 addresses from a vault's public keys, deposit
scanning (ETH by top-level transactions, ERC-20 by Transfer logs) with reorg rollback, EIP-1559
transactions, nonces that survive restarts and are never reused or skipped, replacement of a
stuck transaction, sweeps with gas sent first by a gas station, and broadcast.

It never holds a private key. Deposit addresses live under (0, i); the hot wallet and gas
station are internal paths named by the caller.

Nonces: the adapter's own table is the source of truth. Each intent owns one nonce (a retry of
the same intent gets the same one; a replacement reuses it); a nonce released by an intent
cancelled before broadcast goes to the next intent, so no gap is ever left; a fresh address
starts from the chain's confirmed count.
"""

from __future__ import annotations

import json

import rfc8785
from web3 import Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception

from chains.errors import ChainError
from chains.ethereum import tx as etx
from chains.ethereum.intent import EthereumIntentChecker, asset_contract
from chains.intents import fingerprint, same_intent_or_refuse
from chains.keys import check_path
from chains.scanning import ROLE_DEPOSIT, ROLE_INTERNAL, BlockRef, Scanner
from chains.state import ChainState, DepositRow, StateTx
from node import limits
from node.log import get as get_log
from node.ports import (
    TX_CONFIRMED,
    TX_FAILED,
    TX_MEMPOOL,
    TX_UNKNOWN,
    ChainHeight,
    EcdsaSignature,
    FeeEstimate,
    InputKey,
    Path,
    Payment,
    ReservesAddress,
    SignedTransaction,
    SigningDigest,
    TxStatus,
    UnsignedTransaction,
    VaultKeys,
    WithdrawalIntent,
)

log = get_log("chains.ethereum")

ETH_TRANSFER_GAS = 21_000


def _hex(b) -> str:
    return "0x" + bytes(b).hex()


class EthereumAdapter(Scanner):
    chain = "ethereum"

    def __init__(
        self,
        w3: Web3,
        state: ChainState,
        chain_id: int,
        *,
        confirmations: dict[str, int],
        max_fee_per_gas_fallback: int,
        max_priority_fee_per_gas_fallback: int,
        start_height: int | None = None,
    ):
        self.w3 = w3
        self.chain_id = chain_id
        self.network = str(chain_id)
        self.state = state
        assert state.chain_id == f"ethereum:{chain_id}", state.chain_id
        self.confirmations = self._check_confirmations(
            {("ETH" if a == "ETH" else f"ERC20:{etx.checksum(a[6:])}"): n for a, n in confirmations.items()}
        )
        self.tokens = [a[6:] for a in self.confirmations if a.startswith("ERC20:")]
        assert max_priority_fee_per_gas_fallback <= max_fee_per_gas_fallback
        self.max_fee_per_gas_fallback = max_fee_per_gas_fallback
        self.max_priority_fee_per_gas_fallback = max_priority_fee_per_gas_fallback
        self.start_height = start_height
        self.checker = EthereumIntentChecker()
        self._vaults: dict[str, VaultKeys] = {}
        self._watched: dict[str, tuple[str, Path, str]] | None = None
        node_chain_id = self._rpc(lambda: self.w3.eth.chain_id)
        if node_chain_id != chain_id:
            raise ChainError("node_chain_id_mismatch", f"node is on {node_chain_id}, configured {chain_id}")

    @classmethod
    def connect(cls, url: str, state: ChainState, chain_id: int, **kw) -> "EthereumAdapter":
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": limits.CHAINS_RPC_TIMEOUT_S}))
        return cls(w3, state, chain_id, **kw)

    def _rpc(self, fn):
        """Every node call: web3's and the transport's exceptions become named ChainErrors."""
        try:
            return fn()
        except (TransactionNotFound, ChainError):
            raise
        except ContractLogicError as exc:
            raise ChainError("transaction_would_revert", str(exc)) from exc
        except OSError as exc:  # requests' connection errors and timeouts are OSErrors
            raise ChainError("node_unreachable", repr(exc)) from exc
        except (Web3Exception, ValueError) as exc:
            raise ChainError("node_rpc_error", repr(exc)) from exc

    # --- addresses ------------------------------------------------------------------------
    def register_vault(self, vault_id: str, keys: VaultKeys) -> None:
        self._vaults[vault_id] = keys

    def _destination_keys(self, intent: WithdrawalIntent) -> VaultKeys | None:
        """The keys of the other vault an intent pays (a refill: the hot vault), as registered here."""
        v = intent.own_destination_vault
        return self.keys(v) if v and v != intent.vault_id else None

    def keys(self, vault_id: str) -> VaultKeys:
        try:
            return self._vaults[vault_id]
        except KeyError:
            raise ChainError("vault_unknown", vault_id) from None

    def address(self, vault_id: str, path: Path, role: str | None = None) -> str:
        path = check_path(path)
        role = role or (ROLE_DEPOSIT if path[:1] == (0,) else ROLE_INTERNAL)
        address = etx.address_of(self.keys(vault_id).child_public_key(path))
        with self.state.begin() as st:
            if st.address_count() >= limits.CHAINS_WATCHED_ADDRESSES_MAX:
                raise ChainError("watched_addresses_at_max")
            st.add_address(address, vault_id, path, role)
        self._watched = None
        return address

    def _watch_map(self, st: StateTx) -> dict[str, tuple[str, Path, str]]:
        if self._watched is None:
            self._watched = st.addresses()
        return self._watched

    # --- node access for the scanner ------------------------------------------------------
    def _node_tip_height(self) -> int:
        return int(self._rpc(lambda: self.w3.eth.block_number))

    def _node_block_hash(self, height: int) -> str:
        return _hex(self._rpc(lambda: self.w3.eth.get_block(height))["hash"])

    def _fetch_blocks(self, start: int, end: int):
        end = min(end, start + limits.CHAINS_ETH_LOG_BLOCKS_PER_CALL_MAX - 1)
        logs_by_block: dict[int, list] = {}
        if self.tokens:
            logs = self._rpc(
                lambda: self.w3.eth.get_logs(
                    {
                        "fromBlock": start,
                        "toBlock": end,
                        "address": self.tokens,
                        "topics": [_hex(etx.ERC20_TRANSFER_TOPIC)],
                    }
                )
            )
            for lg in logs:
                logs_by_block.setdefault(int(lg["blockNumber"]), []).append(lg)
        with self.state.begin() as st:
            watched = self._watch_map(st)
        for height in range(start, end + 1):
            block = self._rpc(lambda: self.w3.eth.get_block(height, full_transactions=True))
            ref = BlockRef(height, _hex(block["hash"]), _hex(block["parentHash"]))
            logs = logs_by_block.get(height, [])
            if any(_hex(lg["blockHash"]) != ref.hash for lg in logs):
                return  # the chain moved between the two reads; the next scan sees it
            # Receipts of the transactions that pay our addresses (did they succeed?), read now
            # so that applying the block is database work only.
            succeeded = set()
            for t in block["transactions"]:
                to = t.get("to")
                if to and int(t["value"]) > 0 and etx.checksum(to) in watched:
                    receipt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(t["hash"]))
                    if int(receipt["status"]) == 1 and _hex(receipt["blockHash"]) == ref.hash:
                        succeeded.add(_hex(t["hash"]))
            yield ref, (block, logs, succeeded)

    def _apply_block(self, st: StateTx, ref: BlockRef, payload) -> list:
        block, logs, succeeded = payload
        watched = self._watch_map(st)
        candidates: list[DepositRow] = []
        for t in block["transactions"]:
            to = t.get("to")
            if not to or int(t["value"]) == 0:
                continue
            to = etx.checksum(to)
            hit = watched.get(to)
            # Our own transfers (gas top-ups, sweeps) are not customer deposits.
            if hit is None or hit[2] != ROLE_DEPOSIT or etx.checksum(t["from"]) in watched:
                continue
            if _hex(t["hash"]) not in succeeded:
                continue  # reverted (or the chain moved): no value arrived
            candidates.append(self._row(f"{_hex(t['hash'])}:value", "ETH", _hex(t["hash"]), to, hit, int(t["value"]), ref))
        for lg in logs:
            topics = lg["topics"]
            if len(topics) != 3 or bytes(topics[0]) != etx.ERC20_TRANSFER_TOPIC:
                continue
            sender = etx.checksum(_hex(bytes(topics[1])[12:]))
            to = etx.checksum(_hex(bytes(topics[2])[12:]))
            hit = watched.get(to)
            if hit is None or hit[2] != ROLE_DEPOSIT or sender in watched:
                continue
            amount = int.from_bytes(bytes(lg["data"]), "big")
            if amount == 0:
                continue
            asset = f"ERC20:{etx.checksum(lg['address'])}"
            txh = _hex(lg["transactionHash"])
            candidates.append(self._row(f"{txh}:{int(lg['logIndex'])}", asset, txh, to, hit, amount, ref))
        return self._seen(st, candidates)

    @staticmethod
    def _row(deposit_id, asset, txh, to, hit, amount, ref) -> DepositRow:
        vault_id, path, _ = hit
        return DepositRow(deposit_id, asset, txh, to, vault_id, path, amount, ref.height, ref.hash)

    def _rollback(self, st: StateTx, fork_height: int) -> None:
        # Balances are read from the node; nonces stay ours (a reorged-out transaction of ours
        # returns to the mempool with its nonce, or is rebroadcast as is).
        pass

    # --- funds and fees -------------------------------------------------------------------
    def balance(self, address: str, asset: str = "ETH") -> int:
        contract = asset_contract(asset)
        if contract is None:
            return int(self._rpc(lambda: self.w3.eth.get_balance(address)))
        data = "0x70a08231" + bytes.fromhex(address[2:]).rjust(32, b"\0").hex()  # balanceOf(address)
        out = self._rpc(lambda: self.w3.eth.call({"to": contract, "data": data}))
        return int.from_bytes(bytes(out), "big")

    def balance_at(self, address: str, asset: str, height: int) -> int:
        """`balance` at the end of block `height` (eth_getBalance / balanceOf at that block)."""
        contract = asset_contract(asset)
        if contract is None:
            return int(self._rpc(lambda: self.w3.eth.get_balance(address, block_identifier=height)))
        data = "0x70a08231" + bytes.fromhex(address[2:]).rjust(32, b"\0").hex()  # balanceOf(address)
        out = self._rpc(lambda: self.w3.eth.call({"to": contract, "data": data}, block_identifier=height))
        return int.from_bytes(bytes(out), "big")

    def _balances_batch(self, queries: list[tuple[str, str]], height: int) -> list[int]:
        """(address, asset) balances at `height` in one JSON-RPC batch request."""
        with self.w3.batch_requests() as batch:
            for address, asset in queries:
                contract = asset_contract(asset)
                if contract is None:
                    batch.add(self.w3.eth.get_balance(address, block_identifier=height))
                else:
                    data = "0x70a08231" + bytes.fromhex(address[2:]).rjust(32, b"\0").hex()
                    batch.add(self.w3.eth.call({"to": contract, "data": data}, block_identifier=height))
            results = batch.execute()
        return [int(r) if isinstance(r, int) else int.from_bytes(bytes(r), "big") for r in results]

    # --- proof of reserves (node.ports.ReservesBalances) ------------------------------------
    def reserves_height(self) -> ChainHeight:
        """The block our scan has reached (block hash without 0x, as the snapshot header has it)."""
        with self.state.begin() as st:
            tip = st.tip()
        if tip is None:
            raise ChainError("not_scanned_yet")
        return ChainHeight(self.chain, self.network, tip[0], tip[1].removeprefix("0x"))

    def funded_addresses(self, chains: tuple[ChainHeight, ...]) -> list[ReservesAddress]:
        """Every address of ours holding ETH or a configured token at the snapshot's Ethereum
        block, read from the node at that block number (after checking the node still has the
        snapshot's block there)."""
        at = [c for c in chains if c.chain == self.chain]
        if not at:
            return []
        if len(at) != 1 or at[0].network != self.network:
            raise ChainError("reserves_height_mismatch", f"{at} for ethereum/{self.network}")
        h = at[0]
        node_hash = _hex(self._rpc(lambda: self.w3.eth.get_block(h.height))["hash"])
        if node_hash.removeprefix("0x") != h.block_hash.removeprefix("0x").lower():
            raise ChainError("snapshot_block_reorged", f"block {h.height} is {node_hash}, the snapshot says {h.block_hash}")
        with self.state.begin() as st:
            watched = sorted(st.addresses().items())
        assets = ["ETH"] + [f"ERC20:{t}" for t in self.tokens]
        queries = [(address, vault_id, path, asset) for address, (vault_id, path, _role) in watched for asset in assets]
        out = []
        # JSON-RPC batches: a million addresses are a few thousand round trips, not millions.
        for start in range(0, len(queries), limits.POR_ETH_BALANCES_PER_BATCH):
            chunk = queries[start : start + limits.POR_ETH_BALANCES_PER_BATCH]
            balances = self._rpc(lambda: self._balances_batch([(q[0], q[3]) for q in chunk], h.height))
            assert len(balances) == len(chunk), "one answer per query"
            for (address, vault_id, path, asset), bal in zip(chunk, balances):
                if bal > 0:
                    out.append(ReservesAddress(self.chain, asset, address, vault_id, path, bal))
        after = _hex(self._rpc(lambda: self.w3.eth.get_block(h.height))["hash"])
        if after != node_hash:  # a reorg while reading: the balances may mix two chains
            raise ChainError("snapshot_block_reorged", f"block {h.height} changed while its balances were read")
        return out

    def estimate_fee(self) -> FeeEstimate:
        """maxFeePerGas = 2 x the latest base fee + the node's suggested tip; the configured
        fallback when the node cannot say."""
        try:
            base = int(self._rpc(lambda: self.w3.eth.get_block("latest"))["baseFeePerGas"])
            tip = int(self._rpc(lambda: self.w3.eth.max_priority_fee))
            tip = min(tip, self.max_priority_fee_per_gas_fallback * 10)
            return FeeEstimate("node", max_fee_per_gas=2 * base + tip, max_priority_fee_per_gas=tip)
        except (ChainError, KeyError):
            return FeeEstimate(
                "fallback",
                max_fee_per_gas=self.max_fee_per_gas_fallback,
                max_priority_fee_per_gas=self.max_priority_fee_per_gas_fallback,
            )

    # --- nonces ---------------------------------------------------------------------------
    def _allocate_nonce(self, st: StateTx, address: str, owner_id: str, confirmed: int) -> int:
        """`confirmed`: the chain's count of mined transactions from `address`, read before the
        database transaction began."""
        mine = st.nonce_of(address, owner_id)
        if mine is not None:
            return mine
        released = st.released_nonce(address, minimum=confirmed)
        if released is not None:
            nonce = released
        else:
            highest = st.highest_nonce(address)
            nonce = confirmed if highest is None else highest + 1
            if nonce < confirmed:
                # Something else signed with our key: never expected; surface it loudly.
                log.error("nonce_behind_chain", address=address, ours=nonce, chain=confirmed)
                raise ChainError("nonce_behind_chain", f"{address}: ours {nonce}, chain {confirmed}")
        if st.open_nonce_count(address, confirmed) >= limits.CHAINS_ETH_NONCE_GAP_MAX:
            raise ChainError("too_many_pending_nonces", address)
        st.claim_nonce(address, nonce, owner_id)
        return nonce

    def signed_of(self, intent_id: str) -> SignedTransaction | None:
        """The latest signed transaction of an intent, to rebroadcast after a restart."""
        with self.state.begin() as st:
            signed = [r for r in st.txs_of(intent_id) if r.raw]
        if not signed:
            return None
        raw = signed[-1].raw
        return SignedTransaction(self.chain, self.network, etx.tx_hash(raw), raw)

    def nonce_of(self, intent_id: str, address: str) -> int | None:
        with self.state.begin() as st:
            return st.nonce_of(address, intent_id)

    def release(self, intent_id: str, sender_path: Path, vault_id: str) -> None:
        """The intent was cancelled before anything was broadcast: its nonce goes to the next."""
        address = etx.address_of(self.keys(vault_id).child_public_key(tuple(sender_path)))
        with self.state.begin() as st:
            if any(r.raw for r in st.txs_of(intent_id)):
                raise ChainError("already_signed", f"{intent_id}: replace it instead of releasing its nonce")
            st.release_nonce(address, intent_id)

    # --- building -------------------------------------------------------------------------
    def _gas_for(self, sender: str, to: str, value: int, data: bytes) -> int:
        if not data:
            code = self._rpc(lambda: self.w3.eth.get_code(to))
            if len(code) == 0:
                return ETH_TRANSFER_GAS
        est = int(self._rpc(lambda: self.w3.eth.estimate_gas({"from": sender, "to": to, "value": value, "data": _hex(data)})))
        gas = est * 6 // 5  # a margin: state can change between estimate and inclusion
        if gas > limits.CHAINS_ETH_GAS_LIMIT_MAX:
            raise ChainError("gas_limit_out_of_range", str(gas))
        return gas

    def build_withdrawal(
        self, intent: WithdrawalIntent, source_path: Path | None = None, fee: FeeEstimate | None = None
    ) -> UnsignedTransaction:
        """One payment from our address at `source_path` (the hot wallet). Idempotent per
        intent id: a second call returns the transaction already built."""
        if intent.chain != self.chain or intent.network != self.network:
            raise ChainError("intent_wrong_chain", f"{intent.chain}/{intent.network}")
        if source_path is None:
            raise ChainError("source_path_required")
        source_path = check_path(source_path)
        if len(intent.payments) != 1:
            raise ChainError("payments_count_out_of_range", "one payment per ethereum transaction")
        contract = asset_contract(intent.asset)
        payment = intent.payments[0]
        dest = etx.checksum(payment.destination)
        with self.state.begin() as st:
            existing = st.txs_of(intent.intent_id)
        if existing:
            same_intent_or_refuse(existing[-1].meta, intent)
            return self._unsigned_from_row(existing[-1])
        sender = etx.address_of(self.keys(intent.vault_id).child_public_key(source_path))
        if contract is None:
            to, value, data = dest, payment.amount, b""
        else:
            to, value, data = contract, 0, etx.erc20_transfer_data(dest, payment.amount)
        gas = self._gas_for(sender, to, value, data)
        fee = fee or self.estimate_fee()
        if gas * fee.max_fee_per_gas > intent.fee_max:
            raise ChainError("fee_exceeds_max", f"{gas * fee.max_fee_per_gas} > {intent.fee_max}")
        confirmed = int(self._rpc(lambda: self.w3.eth.get_transaction_count(sender, "latest")))
        with self.state.begin() as st:
            nonce = self._allocate_nonce(st, sender, intent.intent_id, confirmed)
            t = etx.Eip1559Tx(self.chain_id, nonce, fee.max_priority_fee_per_gas, fee.max_fee_per_gas, gas, to, value, data)
            etx.check_gas(t)
            utx = self._record(st, t, intent, source_path)
        log.info("withdrawal_built", intent=intent.intent_id, nonce=nonce, asset=intent.asset, sender=sender)
        return utx

    def _record(self, st: StateTx, t: etx.Eip1559Tx, intent: WithdrawalIntent, source_path: Path) -> UnsignedTransaction:
        payload = etx.unsigned_payload(t)
        assert etx.digest_of(payload) == etx.digest_eth_account(t), "our EIP-1559 digest disagrees with eth-account"
        sender = etx.address_of(self.keys(intent.vault_id).child_public_key(tuple(source_path)))
        evidence = self._nonce_evidence(st, sender, t.nonce)
        utx = UnsignedTransaction(self.chain, self.network, payload, (InputKey(tuple(source_path), 0),), nonce_evidence=evidence)
        meta = {"path": list(source_path), "intent_sha256": fingerprint(intent)}
        if evidence:
            meta["nonce_evidence"] = evidence.hex()
        st.record_tx(etx.digest_of(payload).hex(), intent.intent_id, payload, rfc8785.dumps(meta).decode())
        return utx

    def _nonce_evidence(self, st: StateTx, sender: str, nonce: int) -> bytes:
        """A transaction of ours from `sender`, signed, at a nonce >= nonce - W: what the peers
        need to sign past their window (chains/ethereum/intent.py check_nonce_window); none
        below it. The node's open nonces stay within the window (CHAINS_ETH_NONCE_GAP_MAX), so
        the last one mined is evidence; a sender whose earlier transactions we never signed
        (nothing recorded) is refused here, as the peers would."""
        w = limits.CLUSTER_ETH_NONCE_WINDOW
        if nonce < w:
            return b""
        for raw in st.signed_txs_from(sender, nonce - w, w + 1):
            e, sig = etx.parse_signed(raw)
            if e.nonce >= nonce - w and etx.recover_address(etx.digest_of(etx.unsigned_payload(e)), sig) == sender:
                return raw
        raise ChainError("nonce_evidence_not_found", f"{sender}: nothing of ours signed at a nonce >= {nonce - w}")

    def _unsigned_from_row(self, row) -> UnsignedTransaction:
        meta = json.loads(row.meta)
        return UnsignedTransaction(self.chain, self.network, row.payload, (InputKey(tuple(meta["path"]), 0),),
                                   nonce_evidence=bytes.fromhex(meta.get("nonce_evidence", "")))

    def replace(self, intent: WithdrawalIntent, bump_percent: int = 25) -> UnsignedTransaction:
        """A replacement for a stuck transaction: the same nonce and payment, both fee caps
        raised by at least CHAINS_ETH_REPLACEMENT_BUMP_PERCENT_MIN percent."""
        if bump_percent < limits.CHAINS_ETH_REPLACEMENT_BUMP_PERCENT_MIN:
            raise ChainError("fee_bump_too_small", f"{bump_percent}% < {limits.CHAINS_ETH_REPLACEMENT_BUMP_PERCENT_MIN}%")
        with self.state.begin() as st:
            rows = st.txs_of(intent.intent_id)
        if not rows:
            raise ChainError("intent_has_no_transaction", intent.intent_id)
        same_intent_or_refuse(rows[-1].meta, intent)
        old_utx = self._unsigned_from_row(rows[-1])
        old = etx.parse_unsigned(old_utx.payload)
        if rows[-1].raw is not None and self.status(etx.tx_hash(rows[-1].raw)).state == TX_CONFIRMED:
            raise ChainError("already_confirmed", etx.tx_hash(rows[-1].raw))
        new = etx.Eip1559Tx(
            old.chain_id,
            old.nonce,
            -(-old.max_priority_fee_per_gas * (100 + bump_percent) // 100),
            -(-old.max_fee_per_gas * (100 + bump_percent) // 100),
            old.gas,
            old.to,
            old.value,
            old.data,
        )
        if new.fee_max > intent.fee_max:
            raise ChainError("fee_exceeds_max", f"{new.fee_max} > {intent.fee_max}")
        with self.state.begin() as st:
            utx = self._record(st, new, intent, old_utx.inputs[0].path)
        log.info("replacement_built", intent=intent.intent_id, nonce=new.nonce, max_fee_per_gas=new.max_fee_per_gas)
        return utx

    def build_gas_topup(
        self, vault_id: str, station_path: Path, to_path: Path, gas_needed_wei: int, intent_id: str, fee_max: int
    ) -> tuple[WithdrawalIntent, UnsignedTransaction] | None:
        """The gas station (our address at `station_path`) sends a deposit address what it
        lacks to pay for its sweep. None when it already holds enough."""
        to_address = self.address(vault_id, to_path)
        missing = gas_needed_wei - self.balance(to_address)
        if missing <= 0:
            return None
        intent = WithdrawalIntent(
            intent_id, vault_id, self.chain, self.network, "ETH", (Payment(to_address, missing),), fee_max,
            kind="sweep", own_destination_paths=(tuple(to_path),),
        )
        return intent, self.build_withdrawal(intent, source_path=station_path)

    def sweep_gas_needed(self, asset: str, fee: FeeEstimate, from_address: str, to_address: str) -> int:
        contract = asset_contract(asset)
        if contract is None:
            return ETH_TRANSFER_GAS * fee.max_fee_per_gas
        amount = self.balance(from_address, asset)
        if amount == 0:
            raise ChainError("nothing_to_sweep", f"{asset} at {from_address}")
        gas = self._gas_for(from_address, contract, 0, etx.erc20_transfer_data(to_address, amount))
        return gas * fee.max_fee_per_gas

    def build_sweep(
        self, vault_id: str, from_path: Path, to_path: Path, asset: str, intent_id: str, fee_max: int,
        fee: FeeEstimate | None = None,
    ) -> tuple[WithdrawalIntent, UnsignedTransaction]:
        """Moves everything of `asset` at the deposit address `from_path` to our address at
        `to_path`. ETH pays its own gas from the amount; a token sweep needs ETH for gas at the
        deposit address first (`build_gas_topup`)."""
        from_address = self.address(vault_id, from_path)
        to_address = self.address(vault_id, to_path, ROLE_INTERNAL)
        fee = fee or self.estimate_fee()
        contract = asset_contract(asset)
        if contract is None:
            amount = self.balance(from_address) - ETH_TRANSFER_GAS * fee.max_fee_per_gas
        else:
            amount = self.balance(from_address, asset)
            gas_needed = self.sweep_gas_needed(asset, fee, from_address, to_address)
            if self.balance(from_address) < gas_needed:
                raise ChainError("sweep_needs_gas", f"{from_address} needs {gas_needed} wei: top it up first")
        if amount <= 0:
            raise ChainError("nothing_to_sweep", f"{asset} at {from_address}")
        intent = WithdrawalIntent(
            intent_id, vault_id, self.chain, self.network, asset, (Payment(to_address, amount),), fee_max,
            kind="sweep", own_destination_paths=(tuple(to_path),),
        )
        return intent, self.build_withdrawal(intent, source_path=from_path, fee=fee)

    # --- signing and broadcast ------------------------------------------------------------
    def digests(self, tx: UnsignedTransaction, intent: WithdrawalIntent) -> list[SigningDigest]:
        return self.checker.check(tx, intent, self.keys(intent.vault_id), self._destination_keys(intent))

    def attach_signatures(
        self, tx: UnsignedTransaction, signatures: list[EcdsaSignature], intent: WithdrawalIntent
    ) -> SignedTransaction:
        self.checker.check(tx, intent, self.keys(intent.vault_id), self._destination_keys(intent))  # check twice at the boundary
        if len(signatures) != 1:
            raise ChainError("signature_count_mismatch", f"{len(signatures)} for one sender")
        sender = etx.address_of(self.keys(intent.vault_id).child_public_key(tx.inputs[0].path))
        raw = etx.attach(etx.parse_unsigned(tx.payload), signatures[0], sender)
        with self.state.begin() as st:
            st.set_tx_raw(etx.digest_of(tx.payload).hex(), raw)
        return SignedTransaction(self.chain, self.network, etx.tx_hash(raw), raw)

    def broadcast(self, signed: SignedTransaction) -> str:
        got = _hex(self._rpc(lambda: self.w3.eth.send_raw_transaction(signed.raw)))
        if got != signed.txid:
            raise ChainError("node_returned_other_txid", f"{got} != {signed.txid}")
        log.info("broadcast", txid=got)
        return got

    def status(self, txid: str) -> TxStatus:
        try:
            receipt = self._rpc(lambda: self.w3.eth.get_transaction_receipt(txid))
        except TransactionNotFound:
            receipt = None
        if receipt is None:
            try:
                self._rpc(lambda: self.w3.eth.get_transaction(txid))
                return TxStatus(txid, TX_MEMPOOL)
            except TransactionNotFound:
                return TxStatus(txid, TX_UNKNOWN)
        height = int(receipt["blockNumber"])
        confs = self._node_tip_height() - height + 1
        state = TX_CONFIRMED if int(receipt["status"]) == 1 else TX_FAILED
        return TxStatus(txid, state, confs, height)
