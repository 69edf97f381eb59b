"""The Bitcoin chain adapter: P2WPKH addresses from a vault's public keys, deposit scanning with
reorg rollback, our own UTXO set (btcd has no wallet), coin selection, batched withdrawals,
sweeps, RBF fee bumps, attaching external signatures and broadcast.

It never holds a private key. Paths: deposit addresses live under (0, i), change under (1, i)
(the BIP44 external/internal convention); the hot wallet's receive address is any internal path
the caller names.
"""

from __future__ import annotations

import decimal
import json

import rfc8785

from chains.bitcoin import prevtx
from chains.bitcoin import tx as btx
from chains.bitcoin.intent import BitcoinIntentChecker
from chains.bitcoin.rpc import BitcoinRpc
from chains.errors import ChainError, RpcError
from chains.intents import fingerprint, same_intent_or_refuse
from chains.keys import check_path
from chains.scanning import ROLE_DEPOSIT, ROLE_INTERNAL, BlockRef, Scanner
from chains.state import ChainState, DepositRow, StateTx, Utxo
from node import limits
from node.log import get as get_log
from node.ports import (
    TX_CONFIRMED,
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

log = get_log("chains.bitcoin")

CHANGE_BRANCH = 1
RPC_ERR_NOT_FOUND = (-5,)  # bitcoind/btcd: no such transaction / block


class BitcoinAdapter(Scanner):
    chain = "bitcoin"

    def __init__(
        self,
        rpc: BitcoinRpc,
        state: ChainState,
        network: str,
        *,
        confirmations: int,
        fee_rate_fallback_sat_vb: int,
        start_height: int | None = None,
        spend_confirmations_min: int = 1,
    ):
        btx.check_network(network)
        self.network = network
        self.rpc = rpc
        self.state = state
        assert state.chain_id == f"bitcoin:{network}", state.chain_id
        self.confirmations = self._check_confirmations({"BTC": confirmations})
        if not limits.CHAINS_BTC_FEE_RATE_SAT_VB_MIN <= fee_rate_fallback_sat_vb <= limits.CHAINS_BTC_FEE_RATE_SAT_VB_MAX:
            raise ChainError("fee_rate_out_of_range", str(fee_rate_fallback_sat_vb))
        self.fee_rate_fallback_sat_vb = fee_rate_fallback_sat_vb
        self.start_height = start_height
        self.spend_confirmations_min = spend_confirmations_min
        self.checker = BitcoinIntentChecker()
        self._vaults: dict[str, VaultKeys] = {}
        self._watched: dict[bytes, tuple[str, str, Path, str]] | None = None  # script -> (addr, vault, path, role)

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
        assert role in (ROLE_DEPOSIT, ROLE_INTERNAL), role
        pub = self.keys(vault_id).child_public_key(path)
        address = btx.p2wpkh_address(pub, self.network)
        with self.state.begin() as st:
            if st.address_count() >= limits.CHAINS_WATCHED_ADDRESSES_MAX:
                raise ChainError("watched_addresses_at_max")
            st.add_address(address, vault_id, path, role)
        self._watched = None
        return address

    def _watch_map(self, st: StateTx) -> dict[bytes, tuple[str, str, Path, str]]:
        if self._watched is None:
            rows = st.addresses()
            self._watched = {}
            for address, (vault_id, path, role) in rows.items():
                self._watched[btx.script_pubkey_for(address, self.network)] = (address, vault_id, path, role)
        return self._watched

    # --- node access for the scanner ------------------------------------------------------
    def _node_tip_height(self) -> int:
        return int(self.rpc.call("getblockcount"))

    def _node_block_hash(self, height: int) -> str:
        return self.rpc.call("getblockhash", height)

    def _fetch_blocks(self, start: int, end: int):
        for height in range(start, end + 1):
            block_hash = self.rpc.call("getblockhash", height)
            block = self.rpc.call("getblock", block_hash, 2)
            txs = block.get("rawtx") if block.get("rawtx") is not None else block.get("tx")
            assert int(block["height"]) == height
            yield BlockRef(height, block_hash, block.get("previousblockhash", "")), txs

    def _apply_block(self, st: StateTx, ref: BlockRef, txs) -> list:
        watched = self._watch_map(st)
        parsed_txs = [btx.parse_signed_hex(entry["hex"], self.network) for entry in txs]
        # Our coins spent in this block (one query per chunk of prevouts; a transaction may
        # spend an output created earlier in the same block).
        created_here = {
            (p.txid, vout) for p in parsed_txs for vout, out in enumerate(p.outputs) if out.script_pubkey in watched
        }
        prevouts = [op for p in parsed_txs for op in p.prevouts]
        ours = st.ours_among(prevouts) | (created_here & set(prevouts))
        new_utxos: list[Utxo] = []
        spends: list[tuple[str, int, str]] = []
        candidates: list[DepositRow] = []
        for parsed in parsed_txs:
            txid = parsed.txid
            ours_spent = False
            for op in parsed.prevouts:
                if op in ours:
                    spends.append((op[0], op[1], txid))
                    ours_spent = True
            for vout, out in enumerate(parsed.outputs):
                hit = watched.get(out.script_pubkey)
                if hit is None:
                    continue
                address, vault_id, path, role = hit
                new_utxos.append(Utxo(txid, vout, address, vault_id, path, out.amount, ref.height, parsed.coinbase))
                # Deposits: payments from outside to a deposit address. Our own transactions
                # (change, sweeps) and coinbase outputs are funds, not customer deposits.
                if role == ROLE_DEPOSIT and not ours_spent and not parsed.coinbase:
                    candidates.append(
                        DepositRow(f"{txid}:{vout}", "BTC", txid, address, vault_id, path, out.amount, ref.height, ref.hash)
                    )
        st.add_utxos(new_utxos)
        for prev_txid, prev_vout, txid in spends:
            assert st.spend_utxo(prev_txid, prev_vout, txid, ref.height), f"{prev_txid}:{prev_vout} vanished"
        return self._seen(st, candidates)

    def _rollback(self, st: StateTx, fork_height: int) -> None:
        st.rollback_utxos_above(fork_height)

    # --- funds ----------------------------------------------------------------------------
    def tip_height(self) -> int:
        with self.state.begin() as st:
            tip = st.tip()
        return tip[0] if tip else -1

    def balance(self, vault_id: str) -> int:
        with self.state.begin() as st:
            return sum(u.amount for u in st.unspent_utxos(vault_id))

    # --- proof of reserves (node.ports.ReservesBalances) ------------------------------------
    def reserves_height(self) -> ChainHeight:
        """The block our scan has reached: what a snapshot freezes liabilities at (deposits are
        credited by scanned height)."""
        with self.state.begin() as st:
            tip = st.tip()
        if tip is None:
            raise ChainError("not_scanned_yet")
        return ChainHeight(self.chain, self.network, tip[0], tip[1])

    def funded_addresses(self, chains: tuple[ChainHeight, ...]) -> list[ReservesAddress]:
        """Every address of ours holding coins at the end of the snapshot's Bitcoin block, from
        our own UTXO set (created at or below the height, not spent at or below it). Refuses
        when our scan has not reached that block or the chain no longer has it there."""
        at = [c for c in chains if c.chain == self.chain]
        if not at:
            return []
        if len(at) != 1 or at[0].network != self.network:
            raise ChainError("reserves_height_mismatch", f"{at} for bitcoin/{self.network}")
        h = at[0]
        with self.state.begin() as st:
            tip = st.tip()
            if tip is None or tip[0] < h.height:
                raise ChainError("not_scanned_to_snapshot_height", f"scanned to {tip[0] if tip else -1}, snapshot at {h.height}")
            stored = st.block_hash(h.height)
            coins = st.utxos_at(h.height)
        node_hash = self.rpc.call("getblockhash", h.height)
        if node_hash != h.block_hash or (stored is not None and stored != h.block_hash):
            raise ChainError("snapshot_block_reorged", f"block {h.height} is {node_hash}, the snapshot says {h.block_hash}")
        per: dict[str, list] = {}
        for c in coins:  # summed here in ints: SQL SUM over SQLite's TEXT amounts would be a float
            entry = per.setdefault(c.address, [c.vault_id, c.path, 0])
            entry[2] += c.amount
        return [ReservesAddress(self.chain, "BTC", a, v, p, bal) for a, (v, p, bal) in sorted(per.items()) if bal > 0]

    def estimate_fee(self) -> FeeEstimate:
        """The node's estimate when it has one (bitcoind), else the configured rate (btcd has
        no estimatesmartfee). Always clamped to the configured limits."""
        try:
            res = self.rpc.call("estimatesmartfee", 6)
            feerate = res.get("feerate") if isinstance(res, dict) else None
            if feerate is not None:
                sat_vb = int((decimal.Decimal(feerate) * 100_000_000 / 1000).to_integral_value(decimal.ROUND_CEILING))
                return FeeEstimate("node", fee_rate=_clamp_fee_rate(sat_vb))
        except RpcError:
            pass
        return FeeEstimate("fallback", fee_rate=self.fee_rate_fallback_sat_vb)

    # --- building -------------------------------------------------------------------------
    def _check_intent(self, intent: WithdrawalIntent) -> list[btx.TxOut]:
        if intent.chain != self.chain or intent.network != self.network:
            raise ChainError("intent_wrong_chain", f"{intent.chain}/{intent.network}")
        if intent.asset != "BTC":
            raise ChainError("asset_not_supported", intent.asset)
        if not 1 <= len(intent.payments) <= limits.CHAINS_BTC_PAYMENTS_PER_BATCH_MAX:
            raise ChainError("payments_count_out_of_range", str(len(intent.payments)))
        outs = []
        for p in intent.payments:
            if p.amount < limits.CHAINS_BTC_DUST_SATS:
                raise ChainError("amount_below_dust", f"{p.amount} < {limits.CHAINS_BTC_DUST_SATS}")
            outs.append(btx.TxOut(btx.script_pubkey_for(p.destination, self.network), p.amount))
        self.keys(intent.vault_id)
        return outs

    def build_withdrawal(
        self, intent: WithdrawalIntent, source_path: Path | None = None, fee_rate_sat_vb: int | None = None
    ) -> UnsignedTransaction:
        """Selects coins of the intent's vault (largest first), pays every payment in one
        transaction (a batch when there are several), returns change to a fresh internal
        address, and reserves the coins. Idempotent per intent id: a second call returns the
        transaction already built."""
        outs = self._check_intent(intent)
        with self.state.begin() as st:
            existing = st.txs_of(intent.intent_id)
        if existing:
            same_intent_or_refuse(existing[-1].meta, intent)
            return self._unsigned_from_row(existing[-1])
        fee_rate = _clamp_fee_rate(fee_rate_sat_vb or self.estimate_fee().fee_rate)
        pay_total = sum(o.amount for o in outs)
        keys = self.keys(intent.vault_id)
        with self.state.begin() as st:
            tip = st.tip()
            if tip is None:
                raise ChainError("not_scanned_yet")
            coins = st.spendable_utxos(
                intent.vault_id, tip[0], self.spend_confirmations_min, limits.CHAINS_BTC_COINBASE_MATURITY_BLOCKS
            )
            if source_path is not None:
                coins = [c for c in coins if c.path == tuple(source_path)]
            coins.sort(key=lambda u: (-u.amount, u.txid, u.vout))
            change_path = (CHANGE_BRANCH, st.next_counter(f"change:{intent.vault_id}"))
            change_script = btx.p2wpkh_script_pubkey(keys.child_public_key(change_path))
            chosen: list[Utxo] = []
            total = 0
            parents = _Parents(self._prev_tx)
            for coin in coins:
                # a coin whose parent is larger than the peers take beside others is only swept
                # (alone, build_sweep); one past the request's budget waits for another withdrawal
                if not parents.admit(coin, alone_allowed=False):
                    continue
                chosen.append(coin)
                total += coin.amount
                if len(chosen) > limits.CHAINS_BTC_INPUTS_MAX:
                    raise ChainError("too_many_inputs_needed", f"more than {limits.CHAINS_BTC_INPUTS_MAX}")
                fee_with_change = fee_rate * btx.vsize_estimate(len(chosen), [o.script_pubkey for o in outs] + [change_script])
                if total >= pay_total + fee_with_change:
                    break
            else:
                available = sum(c.amount for c in coins)
                raise ChainError("exceeds_available_balance", f"need {pay_total} + fee, spendable {available}")
            change = total - pay_total - fee_with_change
            outputs = list(outs)
            change_paths: tuple[Path, ...] = ()
            if change >= limits.CHAINS_BTC_DUST_SATS:
                outputs.append(btx.TxOut(change_script, change))
                change_paths = (change_path,)
                fee = fee_with_change
            else:
                fee = total - pay_total  # dust change goes to the miners
            if fee > intent.fee_max:
                raise ChainError("fee_exceeds_max", f"{fee} > {intent.fee_max}")
            ins = [btx.TxIn(c.txid, c.vout, c.amount, keys.child_public_key(c.path)) for c in chosen]
            t = btx.build(ins, outputs, self.network)
            utx = UnsignedTransaction(
                chain=self.chain,
                network=self.network,
                payload=btx.unsigned_bytes(t),
                inputs=tuple(InputKey(c.path, c.amount) for c in chosen),
                change_paths=change_paths,
                prev_txs=parents.prev_txs(),
            )
            if change_paths:
                st.add_address(btx.p2wpkh_address(keys.child_public_key(change_path), self.network), intent.vault_id, change_path, ROLE_INTERNAL)
            st.reserve_utxos([(c.txid, c.vout) for c in chosen], intent.intent_id)
            st.record_tx(btx.txid_of(utx.payload), intent.intent_id, utx.payload, _meta(utx, fee, fee_rate, intent))
        self._watched = None
        log.info("withdrawal_built", intent=intent.intent_id, inputs=len(chosen), outputs=len(outputs), fee_sats=fee)
        return utx

    def build_sweep(
        self, vault_id: str, to_path: Path, intent_id: str, fee_max: int, fee_rate_sat_vb: int | None = None,
        from_role: str = ROLE_DEPOSIT,
    ) -> tuple[WithdrawalIntent, UnsignedTransaction]:
        """Moves every spendable coin of `vault_id`'s deposit addresses to our own address at
        `to_path` (the hot wallet), fee paid from the amount. Returns the intent to approve (a
        sweep: its one payment goes to our own address) and the transaction."""
        to_path = check_path(to_path)
        keys = self.keys(vault_id)
        to_address = self.address(vault_id, to_path, ROLE_INTERNAL)
        to_script = btx.p2wpkh_script_pubkey(keys.child_public_key(to_path))
        fee_rate = _clamp_fee_rate(fee_rate_sat_vb or self.estimate_fee().fee_rate)
        with self.state.begin() as st:
            tip = st.tip()
            if tip is None:
                raise ChainError("not_scanned_yet")
            roles = st.addresses()
            coins = [
                c
                for c in st.spendable_utxos(vault_id, tip[0], self.spend_confirmations_min, limits.CHAINS_BTC_COINBASE_MATURITY_BLOCKS)
                if roles.get(c.address, (None, None, None))[2] == from_role
            ]
            coins.sort(key=lambda u: (u.height, u.txid, u.vout))
            # Each coin's parent goes to the peers (proven amounts): a parent larger than they
            # take beside others is swept alone when it comes first, else in a later sweep.
            parents = _Parents(self._prev_tx)
            coins = [c for c in coins[: limits.CHAINS_BTC_INPUTS_MAX] if parents.admit(c, alone_allowed=True)]
            if not coins:
                raise ChainError("nothing_to_sweep")
            if parents.alone():
                log.info("sweep_alone_large_parent", vault=vault_id, deposit=f"{coins[0].txid}:{coins[0].vout}",
                         parent_bytes=parents.total_bytes())
            total = sum(c.amount for c in coins)
            fee = fee_rate * btx.vsize_estimate(len(coins), [to_script])
            amount = total - fee
            if amount < limits.CHAINS_BTC_DUST_SATS:
                raise ChainError("sweep_below_dust", f"{total} - fee {fee}")
            if fee > fee_max:
                raise ChainError("fee_exceeds_max", f"{fee} > {fee_max}")
            intent = WithdrawalIntent(
                intent_id=intent_id,
                vault_id=vault_id,
                chain=self.chain,
                network=self.network,
                asset="BTC",
                payments=(Payment(to_address, amount),),
                fee_max=fee_max,
                kind="sweep",
                own_destination_paths=(to_path,),
            )
            ins = [btx.TxIn(c.txid, c.vout, c.amount, keys.child_public_key(c.path)) for c in coins]
            t = btx.build(ins, [btx.TxOut(to_script, amount)], self.network)
            utx = UnsignedTransaction(self.chain, self.network, btx.unsigned_bytes(t), tuple(InputKey(c.path, c.amount) for c in coins),
                                      prev_txs=parents.prev_txs())
            st.reserve_utxos([(c.txid, c.vout) for c in coins], intent_id)
            st.record_tx(btx.txid_of(utx.payload), intent_id, utx.payload, _meta(utx, fee, fee_rate, intent))
        return intent, utx

    def bump_fee(self, intent: WithdrawalIntent, fee_rate_sat_vb: int) -> UnsignedTransaction:
        """Replace-by-fee for a stuck withdrawal: the same inputs and payments, a higher fee
        taken from the change. BIP125: the new fee pays for its own size at the relay rate on
        top of the old fee."""
        with self.state.begin() as st:
            rows = st.txs_of(intent.intent_id)
        if not rows:
            raise ChainError("intent_has_no_transaction", intent.intent_id)
        last = rows[-1]
        same_intent_or_refuse(last.meta, intent)
        if self.status(last.txid).state == TX_CONFIRMED:
            raise ChainError("already_confirmed", last.txid)
        meta = json.loads(last.meta)
        old = self._unsigned_from_row(last)
        keys = self.keys(intent.vault_id)
        parsed = btx.parse_unsigned(old.payload, self.network)
        change_scripts = {btx.p2wpkh_script_pubkey(keys.child_public_key(p)) for p in old.change_paths}
        change_idx = [n for n, o in enumerate(parsed.outputs) if o.script_pubkey in change_scripts]
        if not change_idx:
            raise ChainError("no_change_to_bump_from", intent.intent_id)
        fee_rate = _clamp_fee_rate(fee_rate_sat_vb)
        vsize = btx.vsize_estimate(len(parsed.inputs), [o.script_pubkey for o in parsed.outputs])
        old_fee = int(meta["fee"])
        new_fee = fee_rate * vsize
        if new_fee < old_fee + limits.CHAINS_BTC_FEE_RATE_SAT_VB_MIN * vsize:
            raise ChainError("fee_bump_too_small", f"{new_fee} < {old_fee} + {vsize} vB at the relay rate")
        if new_fee > intent.fee_max:
            raise ChainError("fee_exceeds_max", f"{new_fee} > {intent.fee_max}")
        outputs = list(parsed.outputs)
        c = change_idx[0]
        new_change = outputs[c].amount - (new_fee - old_fee)
        if new_change < limits.CHAINS_BTC_DUST_SATS:
            raise ChainError("fee_bump_exceeds_change", f"change would be {new_change}")
        outputs[c] = btx.TxOut(outputs[c].script_pubkey, new_change)
        ins = [
            btx.TxIn(txid, vout, k.amount, keys.child_public_key(k.path), seq)
            for (txid, vout, seq), k in zip(parsed.inputs, old.inputs)
        ]
        t = btx.build(ins, outputs, self.network, locktime=parsed.locktime, version=parsed.version)
        utx = UnsignedTransaction(self.chain, self.network, btx.unsigned_bytes(t), old.inputs, old.change_paths, old.prev_txs)
        with self.state.begin() as st:
            st.record_tx(btx.txid_of(utx.payload), intent.intent_id, utx.payload, _meta(utx, new_fee, fee_rate, intent))
        log.info("fee_bumped", intent=intent.intent_id, old_fee_sats=old_fee, new_fee_sats=new_fee)
        return utx

    def release(self, intent_id: str) -> None:
        """The intent was cancelled before signing: its coins become spendable again. Once a
        transaction of it is signed, its coins stay reserved (it may still be mined)."""
        with self.state.begin() as st:
            if any(r.raw for r in st.txs_of(intent_id)):
                raise ChainError("already_signed", intent_id)
            st.release_utxos(intent_id)

    def signed_of(self, intent_id: str) -> SignedTransaction | None:
        """The latest signed transaction of an intent, to rebroadcast after a restart."""
        with self.state.begin() as st:
            signed = [r for r in st.txs_of(intent_id) if r.raw]
        if not signed:
            return None
        return SignedTransaction(self.chain, self.network, signed[-1].txid, signed[-1].raw)

    def _unsigned_from_row(self, row) -> UnsignedTransaction:
        meta = json.loads(row.meta)
        if "prev_txs" in meta:
            prev_txs = tuple(bytes.fromhex(h) for h in meta["prev_txs"])
        else:  # built before inputs were proven: fetched now (needs the node's transaction index)
            parents = _Parents(self._prev_tx)
            for txid in dict.fromkeys(txid for txid, _, _ in btx.parse_unsigned(row.payload, self.network).inputs):
                parents.add(txid, None)
            prev_txs = parents.prev_txs()
        return UnsignedTransaction(
            chain=self.chain,
            network=self.network,
            payload=row.payload,
            inputs=tuple(InputKey(tuple(i["path"]), int(i["amount"])) for i in meta["inputs"]),
            change_paths=tuple(tuple(p) for p in meta["change_paths"]),
            prev_txs=prev_txs,
        )

    def _prev_tx(self, txid: str, height: int | None) -> bytes:
        """The transaction `txid` (a parent of our coin), stripped, from the node: by txid, or,
        without a transaction index, from its block at `height`. Checked: its txid is `txid`."""
        try:
            raw = bytes.fromhex(self.rpc.call("getrawtransaction", txid, 0))
        except RpcError as exc:
            if exc.code not in RPC_ERR_NOT_FOUND or height is None:
                raise
            block = self.rpc.call("getblock", self.rpc.call("getblockhash", height), 2)
            txs = block.get("rawtx") if block.get("rawtx") is not None else block.get("tx")
            found = [s for s in (prevtx.strip(bytes.fromhex(e["hex"])) for e in txs) if prevtx.txid_of_stripped(s) == txid]
            if not found:
                raise ChainError("prev_tx_not_found", f"{txid} in block {height}") from None
            raw = found[0]
        stripped = prevtx.strip(raw)
        if prevtx.txid_of_stripped(stripped) != txid:
            raise ChainError("prev_tx_mismatch", f"the node returned another transaction for {txid}")
        return stripped

    # --- signing and broadcast ------------------------------------------------------------
    def digests(self, tx: UnsignedTransaction, intent: WithdrawalIntent) -> list[SigningDigest]:
        return self.checker.check(tx, intent, self.keys(intent.vault_id), self._destination_keys(intent))

    def attach_signatures(
        self, tx: UnsignedTransaction, signatures: list[EcdsaSignature], intent: WithdrawalIntent
    ) -> SignedTransaction:
        self.checker.check(tx, intent, self.keys(intent.vault_id), self._destination_keys(intent))  # check twice at the boundary
        t, _ = self.checker.rebuild(tx, self.keys(intent.vault_id))
        raw = btx.attach(t, signatures)
        txid = btx.txid_of(tx.payload)
        with self.state.begin() as st:
            st.set_tx_raw(txid, raw)
        return SignedTransaction(self.chain, self.network, txid, raw)

    def broadcast(self, signed: SignedTransaction) -> str:
        txid = self.rpc.call("sendrawtransaction", signed.raw.hex())
        if txid != signed.txid:
            raise ChainError("node_returned_other_txid", f"{txid} != {signed.txid}")
        log.info("broadcast", txid=txid)
        return txid

    def status(self, txid: str) -> TxStatus:
        """Mempool or confirmed, with confirmations. A node without a transaction index
        (bitcoind's default) cannot look up mined transactions: ours are then found in our own
        scanned UTXO set."""
        try:
            res = self.rpc.call("getrawtransaction", txid, 1)
        except RpcError as exc:
            if exc.code not in RPC_ERR_NOT_FOUND:
                raise
            with self.state.begin() as st:
                height = st.mined_height_of(txid)
            if height is None:
                return TxStatus(txid, TX_UNKNOWN)
            confs = self._node_tip_height() - height + 1
            return TxStatus(txid, TX_CONFIRMED, confs, height)
        confs = int(res.get("confirmations") or 0)
        if confs <= 0:
            return TxStatus(txid, TX_MEMPOOL)
        block = self.rpc.call("getblockheader", res["blockhash"], True)
        return TxStatus(txid, TX_CONFIRMED, confs, int(block["height"]))


class _Parents:
    """The previous transactions of the coins chosen for one transaction, each once, within what
    the signer peers take (chains/bitcoin/intent.py proven_amounts): each at most
    CLUSTER_PREV_TX_BYTES_MAX beside others, all together at most CLUSTER_PREV_TXS_BYTES_MAX."""

    def __init__(self, fetch):
        self.fetch = fetch
        self.by_txid: dict[str, bytes] = {}

    def admit(self, coin: Utxo, alone_allowed: bool) -> bool:
        """Adds `coin`'s parent if the set stays within the limits (a large one only alone,
        when `alone_allowed`); False: the coin is left for another transaction."""
        if coin.txid in self.by_txid:
            return True
        raw = self.fetch(coin.txid, coin.height)
        sizes = [len(r) for r in self.by_txid.values()] + [len(raw)]
        if sum(sizes) > limits.CLUSTER_PREV_TXS_BYTES_MAX:
            return False
        if max(sizes) > limits.CLUSTER_PREV_TX_BYTES_MAX and (len(sizes) > 1 or not alone_allowed):
            return False
        self.by_txid[coin.txid] = raw
        return True

    def add(self, txid: str, height: int | None) -> None:
        self.by_txid[txid] = self.fetch(txid, height)

    def alone(self) -> bool:
        return len(self.by_txid) == 1 and self.total_bytes() > limits.CLUSTER_PREV_TX_BYTES_MAX

    def total_bytes(self) -> int:
        return sum(len(r) for r in self.by_txid.values())

    def prev_txs(self) -> tuple[bytes, ...]:
        return tuple(self.by_txid.values())


def _clamp_fee_rate(sat_vb: int) -> int:
    if not isinstance(sat_vb, int) or sat_vb > limits.CHAINS_BTC_FEE_RATE_SAT_VB_MAX:
        raise ChainError("fee_rate_out_of_range", repr(sat_vb))
    return max(limits.CHAINS_BTC_FEE_RATE_SAT_VB_MIN, sat_vb)


def _meta(utx: UnsignedTransaction, fee: int, fee_rate: int, intent: WithdrawalIntent) -> str:
    return rfc8785.dumps(
        {
            "intent_sha256": fingerprint(intent),
            "inputs": [{"path": list(k.path), "amount": str(k.amount)} for k in utx.inputs],
            "change_paths": [list(p) for p in utx.change_paths],
            "prev_txs": [raw.hex() for raw in utx.prev_txs],
            "fee": str(fee),
            "fee_rate_sat_vb": str(fee_rate),
        }
    ).decode()
