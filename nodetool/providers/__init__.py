"""Chat providers: the protocol, the registry with routing, and the built-in providers."""
