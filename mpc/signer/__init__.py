"""The signer peer: `custody signer --config FILE` — config, policy, request checks, daemon,
coordinator. Each peer holds one party's shares and refuses whatever its own policy does not allow."""
