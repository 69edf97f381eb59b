"""The signer: tss-lib through a Go shim (C ABI) bound with cffi, sessions, peer transport,
share storage and the signer's own policy check.

Go's runtime does not survive fork(): a process that has loaded the shim (mpc._native) must
never fork; use the multiprocessing "spawn" start method and subprocess (fork+exec) only.
"""
