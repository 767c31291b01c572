"""FastAPI edge: app factories, one route module per API area, error mapping, middleware."""
