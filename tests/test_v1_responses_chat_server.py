"""Stored /v1/responses on the real `nodetool chat-server`: in the data dir's database, so they
survive a restart and are shared by every chat-server process on that data dir."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.servers import CliServer
from tests.support.v1 import MODEL


def _env(stub_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": stub_url,
        "OPENAI_API_KEY": "sk-test",
        "NODETOOL_DEFAULT_PROVIDER": "openai",
        "NODETOOL_DEFAULT_MODEL": MODEL,
        "NODETOOL_DATA_DIR": str(data_dir),
        "NODETOOL_CONFIG_DIR": str(data_dir / "config"),
        "AUTH_PROVIDER": "none",
        "NODETOOL_LOG_LEVEL": "warning",
    }


def _client(server: CliServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_stored_response_survives_a_restart(openai_stub, tmp_path) -> None:
    env = _env(openai_stub.url, tmp_path)
    with CliServer("chat-server", env=env) as first, _client(first) as client:
        made = client.responses.create(model=MODEL, input="remember me")
        gone = client.responses.create(model=MODEL, input="forget me")
        client.responses.delete(gone.id)
    assert (tmp_path / "nodetool.db").is_file()
    with CliServer("chat-server", env=env) as second, _client(second) as client:
        kept = client.responses.retrieve(made.id)
        assert kept.id == made.id and kept.output_text == "Echo: remember me"
        items = client.responses.input_items.list(made.id)
        assert [item.content[0].text for item in items.data] == ["remember me"]
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(gone.id)


def test_previous_response_id_across_two_processes(openai_stub, tmp_path) -> None:
    env = _env(openai_stub.url, tmp_path)
    with (
        CliServer("chat-server", env=env) as one,
        CliServer("chat-server", env=env) as two,
        _client(one) as first_client,
        _client(two) as second_client,
    ):
        first = first_client.responses.create(model=MODEL, input="my name is Ada")
        openai_stub.reset()
        second = second_client.responses.create(
            model=MODEL, input="what is my name?", previous_response_id=first.id
        )
        assert second.previous_response_id == first.id
        sent = openai_stub.requests[-1]["messages"]
        assert [(m["role"], m["content"]) for m in sent] == [
            ("user", "my name is Ada"),
            ("assistant", "Echo: my name is Ada"),
            ("user", "what is my name?"),
        ]
        assert first_client.responses.retrieve(second.id).output_text == second.output_text
        second_client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            first_client.responses.retrieve(first.id)
