"""totpd: a gRPC service that enrolls and verifies TOTP second factors (RFC 6238)."""

__version__ = "0.1.0"
