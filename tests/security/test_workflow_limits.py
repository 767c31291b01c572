"""Issue 16, point 1: one small workflow request must not freeze, flood or hang the server.

Each attack runs against a real `nodetool serve` on loopback while a prober checks that
`/health` keeps answering within 100 ms (p99). Each asserts the refusal or the limit.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.security.workflow_support import (
    Client,
    HealthProbe,
    cpu_seconds,
    edge,
    node,
    one_node_graph,
    reconnect,
    sandbox_workers,
    serve_env,
    template_graph,
)
from tests.support.servers import CliServer

NODE_CPU_SECONDS = 1
BUSY_TEMPLATE = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[CliServer]:
    env = serve_env(
        tmp_path_factory.mktemp("limits"),
        NODETOOL_WORKFLOW_NODE_CPU_SECONDS=str(NODE_CPU_SECONDS),
        NODETOOL_WORKFLOW_NODE_TIMEOUT="300",  # a loaded machine must not turn CPU into time
    )
    with CliServer("serve", env=env) as running:
        yield running


@pytest.fixture
def client(server: CliServer) -> Iterator[Client]:
    api = Client(server)
    yield api
    api.close()


def failed_with(record: dict, *needles: str) -> str:
    assert record["status"] == "failed", record
    error = record["error"] or ""
    for needle in needles:
        assert needle in error, error
    return error


def test_nested_ranges_are_refused(server: CliServer, client: Client) -> None:
    attack = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    for record in HealthProbe(server.url).during(lambda: client.run(template_graph(attack))):
        failed_with(record, "range of 100000 items", "NODETOOL_WORKFLOW_MAX_RANGE")


@pytest.mark.parametrize("template", ["{{ 9**(9**9) }}", "{{ 2**99999999 }}"])
def test_huge_powers_in_templates_are_refused(
    server: CliServer, client: Client, template: str
) -> None:
    for record in HealthProbe(server.url).during(lambda: client.run(template_graph(template))):
        failed_with(record, "bits", "NODETOOL_WORKFLOW_MAX_POWER_BITS")


def test_left_associative_power_still_renders(client: Client) -> None:
    # Jinja reads 9**9**9 as (9**9)**9: a 77-digit number, well within the limits
    record = client.run(template_graph("{{ 9**9**9 }}"))
    assert record["status"] == "completed", record
    assert record["results"]["out"] == str((9**9) ** 9)


def test_power_node_with_a_huge_exponent_is_refused(server: CliServer, client: Client) -> None:
    graph = one_node_graph("nodetool.math.Power", base=9, exponent=999999999)
    for record in HealthProbe(server.url).during(lambda: client.run(graph)):
        failed_with(record, "9**999999999", "NODETOOL_WORKFLOW_MAX_POWER_BITS")


def test_template_placeholders_parse_in_linear_time(server: CliServer, client: Client) -> None:
    chat_text = "{{" + " " * 3000  # froze the server for 27 s with the old regex
    spaced = ("{{ " * 20000) + "name }} and {{ " + " " * 100000 + "}}"
    graph = {
        "nodes": [
            node("a", "nodetool.text.Template", string=chat_text),
            node("b", "nodetool.text.Template", string=spaced, values={"name": "Ada"}),
            node("oa", "nodetool.output.Output", name="a"),
            node("ob", "nodetool.output.Output", name="b"),
        ],
        "edges": [edge("a", "oa", "value"), edge("b", "ob", "value")],
    }
    expected = ("{{ " * 19999) + "Ada and {{ " + " " * 100000 + "}}"
    for record in HealthProbe(server.url).during(lambda: client.run(graph, timeout=20)):
        assert record["status"] == "completed", record
        assert record["results"] == {"a": chat_text, "b": expected}


def test_a_gigabyte_string_is_refused(server: CliServer, client: Client) -> None:
    graph = template_graph("{{ ('a'*1000000000)|length }}")
    for record in HealthProbe(server.url).during(lambda: client.run(graph)):
        failed_with(record, "1000000000", "NODETOOL_WORKFLOW_NODE_OUTPUT_BYTES")


def test_memory_blowup_hits_the_memory_limit(server: CliServer, client: Client) -> None:
    graph = template_graph("{{ ('a'*1000).ljust(2000000000)|length }}")
    for record in HealthProbe(server.url).during(lambda: client.run(graph), max_rounds=10):
        failed_with(record, "out of memory", "NODETOOL_WORKFLOW_NODE_MEMORY_MB")


def test_many_medium_values_hit_the_job_memory_budget(server: CliServer, client: Client) -> None:
    # one 1 MB text (far under the per-node limit) passed on for each of 2000 items: 2000
    # references, 2 GB as JSON results and events (before the budget: a minute of work, then
    # memory exhaustion); the default 128 MiB job budget stops it early. The items wait for
    # the text, so every item passes it on; whichever node's value crosses the budget fails.
    graph = {
        "nodes": [
            node("text", "nodetool.text.FormatText", template="{{ 'm' * 1000000 }}"),
            node("items", "nodetool.text.FormatText", template="{{ 'y' * 2000 }}"),
            node("each", "nodetool.control.ForEach"),
            node("pass", "nodetool.boolean.ConditionalSwitch"),
            node("o", "nodetool.output.Output", name="out"),
        ],
        "edges": [
            edge("text", "items", "after"),
            edge("items", "each", "input_list"),
            edge("each", "pass", "condition"),
            edge("text", "pass", "if_true"),
            edge("pass", "o", "value"),
        ],
    }
    probe = HealthProbe(server.url)
    records = probe.during(lambda: client.run(graph, timeout=60), max_rounds=3)
    print(f"/health during the attack: {probe.summary()}")
    for record in records:
        error = failed_with(record, "the limit is 128 MiB (NODETOOL_WORKFLOW_JOB_MEMORY_MB)")
        assert error.startswith(("node 'pass' ", "node 'each' ", "node 'o' ")), error
        assert "the job's values would take more memory than its budget" in error
    after = client.run(template_graph("{{ 6 * 7 }}"))  # the budget is per job
    assert after["status"] == "completed" and after["results"]["out"] == "42", after


def test_cpu_burning_node_is_killed_at_its_cpu_limit(server: CliServer, client: Client) -> None:
    with HealthProbe(server.url).running():
        started = time.monotonic()
        record = client.run(template_graph(BUSY_TEMPLATE), timeout=240)
        elapsed = time.monotonic() - started
    failed_with(record, "CPU time", "NODETOOL_WORKFLOW_NODE_CPU_SECONDS")
    assert elapsed < 240
    after = client.run(template_graph("{{ 6 * 7 }}"))  # the pool replaced the killed worker
    assert after["status"] == "completed" and after["results"]["out"] == "42", after


def test_cancel_stops_a_runaway_node(server: CliServer, client: Client) -> None:
    with HealthProbe(server.url).running():
        job_id = client.start(template_graph(BUSY_TEMPLATE))
        client.wait(job_id, status=("running",))
        busy = _busy_worker(server)
        cancelled = client.cancel(job_id)
        assert cancelled["status"] == "cancelled", cancelled
        deadline = time.monotonic() + 5
        while cpu_seconds(busy) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert cpu_seconds(busy) is None, f"sandbox worker {busy} still runs after the cancel"
    assert client.job(job_id)["status"] == "cancelled"


def _busy_worker(server: CliServer) -> int:
    """The sandbox worker burning CPU (the one running the node)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        before = {pid: cpu_seconds(pid) or 0.0 for pid in sandbox_workers(server)}
        time.sleep(0.15)
        for pid, used in before.items():
            now = cpu_seconds(pid)
            if now is not None and now - used > 0.02:
                return pid
    raise AssertionError("no sandbox worker is running the node")


def test_huge_graphs_are_refused_before_validation(server: CliServer, client: Client) -> None:
    def nodes(count: int) -> list[dict]:
        return [{"id": str(i), "type": "nodetool.constant.String"} for i in range(count)]

    short_edge = {"source": "a", "target": "b", "targetHandle": "a"}
    cases = [
        ({"nodes": nodes(40000), "edges": []}, "NODETOOL_WORKFLOW_MAX_GRAPH_BYTES"),  # unread
        ({"nodes": nodes(5000), "edges": []}, "NODETOOL_WORKFLOW_MAX_NODES"),
        ({"nodes": nodes(2), "edges": [short_edge] * 6000}, "NODETOOL_WORKFLOW_MAX_EDGES"),
        (one_node_graph("nodetool.constant.String", value="x" * 1048576), "MAX_GRAPH_BYTES"),
    ]
    bodies = [(json.dumps({"name": "attack", "graph": g}), setting) for g, setting in cases]
    rounds = itertools.cycle(bodies)  # each body encoded once, each sent again and again

    def attack() -> tuple[str, httpx.Response]:
        body, setting = next(rounds)
        return setting, client.save_raw(body)

    answers = HealthProbe(server.url).during(attack, max_rounds=40)
    assert {setting for setting, _ in answers} == {setting for _, setting in cases}
    for setting, response in answers:
        assert response.status_code == 413, response.text
        assert setting in response.json()["error"]["message"]


def test_a_graph_at_the_node_limit_is_accepted(client: Client) -> None:
    chain = [node("n0", "nodetool.input.StringInput", name="text")]
    chain += [node(f"n{i}", "nodetool.text.Concat", b="") for i in range(1, 2000)]
    edges = [edge(f"n{i - 1}", f"n{i}", "a") for i in range(1, 2000)]
    response = client.save({"nodes": chain, "edges": edges})
    assert response.status_code == 201, response.text
    assert len(response.json()["graph"]["nodes"]) == 2000


def test_foreach_over_a_huge_string_is_refused(server: CliServer, client: Client) -> None:
    graph = {
        "nodes": [
            node("each", "nodetool.control.ForEach", input_list="x" * 200000),
            node("o", "nodetool.output.Output", name="items"),
        ],
        "edges": [edge("each", "o", "value")],
    }
    for record in HealthProbe(server.url).during(lambda: client.run(graph)):
        failed_with(record, "200000 items", "NODETOOL_WORKFLOW_MAX_FOREACH_ITEMS")


def test_foreach_at_the_limit_finishes_with_its_event_log_written(
    server: CliServer, client: Client
) -> None:
    graph = {
        "nodes": [
            node("each", "nodetool.control.ForEach", input_list="y" * 10000),
            node("o", "nodetool.output.Output", name="items"),
        ],
        "edges": [edge("each", "o", "value")],
    }
    probe = HealthProbe(server.url)
    *_, record = probe.during(lambda: client.run(graph, timeout=60), max_rounds=3)
    assert record["status"] == "completed", record
    assert record["results"]["items"] == ["y"] * 10000
    frames = reconnect(server, record["id"])  # only stored events: the log is complete
    outputs = [f for f in frames if f.get("type") == "output_update"]
    progress = [f for f in frames if f.get("type") == "node_progress"]
    assert len(outputs) == 10000
    assert 1 <= len(progress) <= 101
    assert frames[-1]["status"] == "completed"


def test_an_unserialisable_result_fails_the_job_and_reconnect_ends(
    server: CliServer, client: Client
) -> None:
    graph = one_node_graph("nodetool.math.Power", base=2, exponent=16000)  # 4817 digits

    def attack() -> tuple[str, list[dict]]:
        record = client.run(graph)
        return failed_with(record, "cannot be serialised"), reconnect(server, record["id"], 10)

    error, frames = HealthProbe(server.url).during(attack, max_rounds=10)[-1]
    final = frames[-1]
    assert final["type"] == "job_update" and final["status"] == "failed", final
    assert final["error"] == error
    node_errors = [f for f in frames if f.get("type") == "node_update" and f["status"] == "error"]
    assert node_errors and node_errors[0]["node_id"] == "n"
