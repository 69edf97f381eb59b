"""The signer mesh transport: mTLS identities and pinning, envelopes and echo checks, channels."""
