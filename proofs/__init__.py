"""Proof of reserves: the por-mst/1 Merkle-sum tree, snapshots, proof of assets, verifiers."""
