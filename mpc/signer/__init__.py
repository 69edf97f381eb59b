"""The signer peer: `custody signer --config FILE`. Each peer holds one party's shares and
refuses whatever its own policy does not allow.

    config, policy      its config file and its operator's policy (the request checks)
    store, records      sealed shares; the durable record of what it admitted and signed
    prepare             Join's checks, then the tss sessions of one ceremony
    participant         runs its parties: envelopes, echoes, deadlines, abort, commit
    coordinator         runs a ceremony the node asked for across the quorum
    server, peer        the gRPC service; the peer composed from the above
"""
