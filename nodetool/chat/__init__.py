"""The transport-agnostic chat engine: history -> provider -> tool loop -> events."""
