"""Generated protobuf and gRPC stubs of totpd.v1 (made by `make generate`)."""
