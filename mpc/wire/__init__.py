"""The signer protocol's wire formats, shared by both sides: the node (mpc/client.py) builds and
signs requests and checks replies with these; every signer peer parses and verifies the same
bytes with these. Neither side imports the other's internals (trust model 2: a peer decides
only from bytes it parses itself, so the format must not live inside either party).

    requests   node-signed ceremony requests: canonical bytes (RFC 8785), the node's
               signature, approvals, parsers that refuse with named reasons
    parties    party ids per committee generation, tss sub-session ids, the public keys a
               reply is checked against (group key + chain code, public derivation only)

The gRPC messages themselves are mpc/proto/signer.proto.
"""
