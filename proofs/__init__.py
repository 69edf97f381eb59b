"""Proof of reserves: the por-mst/1 Merkle-sum tree, snapshots, proof of assets, verifiers."""

import pathlib

# The static verifier page (verify.html + verify.js), for the API to serve as files.
WEB_DIR = pathlib.Path(__file__).resolve().parent / "web"
