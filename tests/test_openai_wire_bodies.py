"""`completion_body` formats the same bytes as compactly dumping the `chat.completion` dict."""

from __future__ import annotations

import json

import pytest

from nodetool.api.openai_wire import completion_body
from nodetool.types.events import Usage
from nodetool.types.messages import FunctionCall, ToolCall

CALLS = [ToolCall(id="call_1", function=FunctionCall(name="f", arguments='{"a": "é\\n"}'))]
LOGPROBS = [{"token": "a", "logprob": -0.1, "bytes": [97], "top_logprobs": []}]


@pytest.mark.parametrize(
    ("model", "content", "calls", "finish", "usage", "logprobs"),
    [
        ("m", 'héllo "q" \u2028 \U0001f600 \x00', None, "stop", Usage(3, 4), None),
        ("mödel", None, CALLS, "tool_calls", None, None),
        ("m", "", None, "length", Usage(0, 0), LOGPROBS),
        ("m", "x", CALLS, "tool_calls", Usage(1, 2), []),
    ],
)
def test_completion_body_is_the_compact_dump(model, content, calls, finish, usage, logprobs):
    body = completion_body("chatcmpl-x", model, content, calls, finish, usage, logprobs)
    parsed = json.loads(body)
    message = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        message["tool_calls"] = [c.model_dump() for c in calls]
    expected = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": parsed["created"],
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
                "finish_reason": finish,
            }
        ],
        "usage": (usage or Usage()).as_dict(),
        "system_fingerprint": None,
    }
    assert body == json.dumps(expected, separators=(",", ":")).encode()
