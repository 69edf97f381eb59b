"""The custody API (FastAPI), its client and the `custody` command line."""
