"""The pydantic models of every JSON body the HTTP API reads or writes.

They are the one source of truth for the wire: handlers validate request bodies with them
(`model_validate_json`, strict types, unknown fields ignored) and `api/openapi.py` documents
every route from them. Responses are built as plain dicts/strings on the hot paths; the
response models here describe exactly what those builders produce.
"""
