"""Crypto deposits (node/deposits/): addresses and records (core.py, records.py), the one
deposit state machine over the chains' observation logs (booking.py), sweeps (sweeps.py).
See node/deposits/core.py for the whole story and docs/deposits.md."""

from node.deposits.booking import Cursor
from node.deposits.core import Deposits
from node.deposits.records import (ERC20_PREFIX, REVIEW_REVERSAL_NEEDED, STATUSES, DepositAddress, DepositError,
                                   DepositRecord, SyncReport, deposit_record_id, family_of, family_of_safe)
from node.deposits.sweeps import SWEEP_PREFIX, GasMissing, Sweepable, SweepCandidate, Sweeper, WalletAddress

__all__ = ["Cursor", "Deposits", "ERC20_PREFIX", "REVIEW_REVERSAL_NEEDED", "STATUSES", "DepositAddress", "DepositError",
           "DepositRecord", "SyncReport", "deposit_record_id", "family_of", "family_of_safe", "SWEEP_PREFIX", "GasMissing",
           "Sweepable", "SweepCandidate", "Sweeper", "WalletAddress"]
