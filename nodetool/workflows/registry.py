"""Node types by NodeTool type name.

Built-in node classes register themselves with `@register` when their modules are imported
(all of `nodetool.workflows.nodes.BUILTIN`, lazily, on first lookup). Adding a node is one
small class with `@register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from nodetool.workflows.nodes.base import BaseNode

N = TypeVar("N", bound="type[BaseNode]")

_TYPES: dict[str, type[BaseNode]] = {}
_loaded = False


def register(cls: N) -> N:
    """Class decorator: make `cls` available under its `type_name` and `aliases`."""
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} has no type_name")
    for name in (cls.type_name, *cls.aliases):
        existing = _TYPES.get(name)
        if existing is not None and existing is not cls:
            raise TypeError(f"node type {name!r} is registered twice")
        _TYPES[name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        import importlib

        from nodetool.workflows.nodes import BUILTIN

        for module in BUILTIN:  # each registers its nodes
            importlib.import_module(f"nodetool.workflows.nodes.{module}")

        _loaded = True


def node_class(type_name: str) -> type[BaseNode] | None:
    """The class registered for `type_name`, or None."""
    _load()
    return _TYPES.get(type_name)


def known_types() -> list[str]:
    """Every registered type name, sorted."""
    _load()
    return sorted(_TYPES)
