"""The gRPC face of totpd: proto <-> domain translation, errors, the server."""
