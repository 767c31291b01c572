"""Hypothesis strategies for bad `/chat` and `/predict` frames (docs/protocol.md §4, §5).

Every frame drawn here is invalid by construction, so the server must answer each one with
exactly one `error` frame: random bytes/text that do not decode to an object, non-object
values, objects without a known `type`/`command`, and valid frames mutated by one change
that breaks them (a wrong field type, a missing field, an unknown name or id).
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
from hypothesis import strategies as st

CHAT_KINDS = {"message", "stop", "ping", "pong", "client_tools_manifest", "tool_result"}
CHAT_KEYS = {"type", "role", "content", "command"}
PREDICT_COMMANDS = ("run_job", "reconnect_job", "cancel_job", "get_status", "set_mode")
MISSING = object()  # a mutation that deletes the field

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)


def values(binary: bool) -> st.SearchStrategy[Any]:
    """Any JSON (or MessagePack, with bytes) value, nested a little."""
    leaves = _scalars | st.binary(max_size=16) if binary else _scalars
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


def _not(strategy: st.SearchStrategy[Any], *excluded: type) -> st.SearchStrategy[Any]:
    """Values of `strategy` that are not instances of `excluded` (bool counts as its own type)."""

    def ok(value: Any) -> bool:
        if isinstance(value, bool):
            return bool not in excluded
        return not isinstance(value, excluded)

    return strategy.filter(ok)


def _extra(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Extra fields that no frame type reads (ignored by the server)."""
    return st.dictionaries(st.text(max_size=8).map(lambda k: "x_" + k), values(binary), max_size=3)


def encode(frame: Any, binary: bool) -> bytes | str:
    if binary:
        return msgpack.packb(frame, use_bin_type=True)
    return json.dumps(frame)


def _decodes_to_object(raw: bytes | str) -> dict[str, Any] | None:
    try:
        value = msgpack.unpackb(raw, raw=False) if isinstance(raw, bytes) else json.loads(raw)
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def _raw(binary: bool, reserved: set[str]) -> st.SearchStrategy[bytes | str]:
    """Random bytes/text; ones that happen to decode to an object with a reserved key are
    dropped (they could be valid frames)."""
    base = st.binary(max_size=64) if binary else st.text(max_size=64)

    def harmless(raw: bytes | str) -> bool:
        decoded = _decodes_to_object(raw)
        return decoded is None or not (set(map(str, decoded)) & reserved)

    return base.filter(harmless)


def _non_objects(binary: bool) -> st.SearchStrategy[Any]:
    return _not(values(binary), dict).map(lambda v: encode(v, binary))


def _mutate(base: dict[str, Any], mutations: dict[str, st.SearchStrategy[Any]]) -> Any:
    """`base` with one field changed to (or deleted by) a breaking value."""

    def apply(pair: tuple[str, Any]) -> dict[str, Any]:
        key, value = pair
        frame = dict(base)
        if value is MISSING:
            frame.pop(key, None)
        else:
            frame[key] = value
        return frame

    return st.one_of(
        [strategy.map(lambda v, k=key: (k, v)) for key, strategy in mutations.items()]
    ).map(apply)


def _non_str(binary: bool) -> st.SearchStrategy[Any]:
    return _not(values(binary), str, type(None))


# ---- /chat ----------------------------------------------------------------------------------


def _bad_chat_message(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    non_str = _non_str(binary)
    base = {"role": "user", "content": "fuzz"}
    bad_content = (
        _not(values(binary), str, list, type(None))
        | st.lists(_not(values(binary), dict), min_size=1, max_size=3)
        | st.just(MISSING)
    )
    mutations = {
        "content": bad_content,
        "role": _not(values(binary), type(None)).filter(lambda v: v != "user"),
        "thread_id": non_str | st.just("") | st.text(min_size=129, max_size=140),
        "model": non_str,
        "provider": non_str,
        "tools": _not(values(binary), list, type(None))
        | st.lists(non_str, min_size=1, max_size=3)
        | st.just(["no_such_tool_for_fuzzing"]),
        "workflow_id": non_str | st.just(""),
        "graph": _not(values(binary), dict, type(None)),
        "params": _not(values(binary), dict, type(None)),
    }
    message = st.builds(
        lambda typed, extra: {**({"type": "message"} if typed else {}), **base, **extra},
        st.booleans(),
        _extra(binary),
    ).flatmap(lambda frame: _mutate(frame, mutations))
    wrapped = message.map(lambda data: {"command": "chat_message", "data": data})
    return message | wrapped


def _bad_manifest(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    tool = {"name": "fuzz_tool", "description": "d", "parameters": {"type": "object"}}
    bad_tool = _mutate(
        tool,
        {
            "name": _non_str(binary)
            | st.just(MISSING)
            | st.just("")
            | st.text(min_size=65, max_size=70)
            | st.from_regex(r"\A[a-z]{0,5}[ .!/:]{1,3}[a-z]{0,5}\Z"),
            "description": _not(values(binary), str),
            "parameters": _not(values(binary), dict),
        },
    ) | _not(values(binary), dict)
    tools = (
        st.just(MISSING) | _not(values(binary), list) | st.lists(bad_tool, min_size=1, max_size=3)
    )
    return tools.map(
        lambda t: {"type": "client_tools_manifest"} | ({} if t is MISSING else {"tools": t})
    )


def _bad_tool_result(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    base = {"type": "tool_result", "tool_call_id": "call_unknown", "ok": True, "result": "r"}
    return _mutate(
        base,
        {
            "tool_call_id": _non_str(binary)
            | st.just(MISSING)
            | st.just("")
            # a well-formed id that no tool call is waiting for
            | st.text(min_size=1, max_size=30).map(lambda s: "fuzz-" + s),
            "ok": _not(values(binary), bool, type(None)),
            "error": _non_str(binary),
        },
    )


def _bad_chat_objects(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    no_kind = st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in CHAT_KEYS), values(binary), max_size=4
    )
    unknown_type = st.builds(
        lambda kind, extra: {"type": kind, **extra},
        _not(values(binary), type(None)).filter(
            lambda v: not (isinstance(v, str) and v in CHAT_KINDS)
        ),
        _extra(binary),
    )
    bad_command = st.builds(
        lambda command, data: {"command": command, "data": data},
        values(binary).filter(lambda v: v != "chat_message"),
        values(binary),
    ) | _not(values(binary), dict).map(lambda d: {"command": "chat_message", "data": d})
    return st.one_of(
        no_kind,
        unknown_type,
        bad_command,
        _bad_chat_message(binary),
        _bad_manifest(binary),
        _bad_tool_result(binary),
    )


def bad_chat_frames(binary: bool) -> st.SearchStrategy[bytes | str]:
    """One encoded bad `/chat` frame: random, non-object, or a mutated object."""
    objects = _bad_chat_objects(binary).map(lambda f: encode(f, binary))
    return st.one_of(_raw(binary, CHAT_KEYS), _non_objects(binary), objects, objects, objects)


# ---- /predict -------------------------------------------------------------------------------

UNKNOWN_NODE = "nodetool.fuzz.NoSuchNode"


def _bad_graph(binary: bool) -> st.SearchStrategy[Any]:
    node = st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=6), "type": st.just(UNKNOWN_NODE)}
    )
    return _not(values(binary), dict) | st.builds(
        lambda nodes, edges: {"nodes": nodes, "edges": edges},
        st.lists(node, min_size=1, max_size=3),
        st.lists(values(binary), max_size=2),
    )


def _bad_predict_data(binary: bool) -> st.SearchStrategy[tuple[str, Any]]:
    non_str = _non_str(binary)
    unknown_id = st.text(min_size=1, max_size=20).map(lambda s: "fuzz-" + s)
    bad_job_id = st.just(MISSING) | non_str | st.just("") | unknown_id

    def job_data(job_id: Any) -> dict[str, Any]:
        return {} if job_id is MISSING else {"job_id": job_id}

    good_graph = {
        "nodes": [{"id": "in", "type": "nodetool.input.StringInput", "data": {"name": "text"}}],
        "edges": [],
    }
    run_job = st.one_of(
        _extra(binary),  # neither workflow_id nor graph
        (non_str | unknown_id).map(lambda w: {"workflow_id": w}),
        _bad_graph(binary).map(lambda g: {"graph": g}),
        _not(values(binary), dict, type(None)).map(lambda p: {"graph": good_graph, "params": p}),
    )
    return st.one_of(
        run_job.map(lambda d: ("run_job", d)),
        bad_job_id.map(lambda j: ("reconnect_job", job_data(j))),
        bad_job_id.map(lambda j: ("cancel_job", job_data(j))),
        (non_str | st.just("") | unknown_id).map(lambda j: ("get_status", {"job_id": j})),
        (st.just(MISSING) | values(binary).filter(lambda m: m not in ("binary", "text"))).map(
            lambda m: ("set_mode", {} if m is MISSING else {"mode": m})
        ),
    )


def _bad_predict_objects(binary: bool) -> st.SearchStrategy[dict[str, Any]]:
    no_command = st.dictionaries(
        st.text(max_size=8).filter(lambda k: k != "command"), values(binary), max_size=4
    )
    unknown_command = st.builds(
        lambda command, extra: {"command": command, **extra},
        values(binary).filter(lambda c: not (isinstance(c, str) and c in PREDICT_COMMANDS)),
        _extra(binary),
    )
    data_not_object = st.builds(
        lambda command, data: {"command": command, "data": data},
        st.sampled_from(PREDICT_COMMANDS),
        _not(values(binary), dict, type(None)),
    )
    bad_data = _bad_predict_data(binary).map(lambda pair: {"command": pair[0], "data": pair[1]})
    return st.one_of(no_command, unknown_command, data_not_object, bad_data, bad_data)


def bad_predict_frames(binary: bool) -> st.SearchStrategy[bytes | str]:
    """One encoded bad `/predict` frame."""
    objects = _bad_predict_objects(binary).map(lambda f: encode(f, binary))
    return st.one_of(_raw(binary, {"command"}), _non_objects(binary), objects, objects, objects)
