"""The gRPC surface of the core: servicers, conversion, auth, errors, server."""
