"""The domain core: ledger, wallets, withdrawals, risk, approvals, rebalancing, audit.

Imports nothing from api/, mpc/ or chains/; it defines the ports (node.ports) they implement.
"""
