"""The buf.validate schema, generated at build time from protos/buf/validate (make generate)."""
