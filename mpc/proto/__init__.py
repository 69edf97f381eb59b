"""Protobuf definitions of the signer mesh; the *_pb2*.py modules are generated at install."""
