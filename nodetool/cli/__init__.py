"""Typer commands. Thin: parse options, build Settings, call a factory or the client.

Modules here import only typer at import time so `nodetool --help` stays fast.
"""
