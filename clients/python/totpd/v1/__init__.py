"""Generated protobuf and gRPC stubs of totpd.v1 (made at build time by `make generate`)."""
