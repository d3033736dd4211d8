"""OpenAI Responses API (``/v1/responses``) through tokengate with the real ``openai``
SDK and the ``openai-agents`` SDK, served by translation over an OpenAI-compatible
upstream (``fakeoai``, chat completions) and an Anthropic upstream (``fakeanth``,
messages) of the fake upstream: plain and streamed answers, function and custom tools
over two turns with ``previous_response_id``, ``store: false``, retrieve / input_items /
delete, error statuses as SDK exception classes, and usage reconciliation (the response's
usage, the request-log tokens and the charge all equal what the upstream reported)."""

from __future__ import annotations

import json

import openai
import pytest

from e2e_helpers import (
    PROMPT,
    PROMPT_TOKENS,
    SYSTEM,
    SYSTEM_TOKENS,
    TOOL_RESULT,
    WEATHER_Q,
    WEATHER_SCHEMA,
    assert_billed,
    cost_nano,
    max_rowid,
    settle,
    wait_row_where,
)
from fake_upstream import (
    CUSTOM_TOOL_INPUT,
    FAKE_COMPLETION_TOKENS,
    FAKE_CONTENT,
    TOOL_ARGS,
    TOOL_COMPLETION_TOKENS,
    TOOL_NAME,
    count_anthropic_prompt_tokens,
    count_prompt_tokens,
)

OAI = "fakeoai/gpt-test"
ANTH = "fakeanth/claude-test"
KINDS = {"openai": OAI, "anthropic": ANTH}
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}

WEATHER_TOOL = {
    "type": "function",
    "name": TOOL_NAME,
    "description": "Current weather in a city",
    "parameters": WEATHER_SCHEMA,
}
PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Apply a patch to files"}


@pytest.fixture(params=sorted(KINDS))
def model(request):
    return KINDS[request.param]


def upstream_path(model: str) -> str:
    return "/v1/messages" if model == ANTH else "/v1/chat/completions"


def upstream_prompt_tokens(model: str, rec) -> int:
    """Prompt tokens the fake upstream reported for the recorded request."""
    if model == ANTH:
        return count_anthropic_prompt_tokens(rec.body)
    return count_prompt_tokens(rec.body.get("messages"))


def assert_usage_complete(usage) -> None:
    assert usage is not None
    assert isinstance(usage.input_tokens, int)
    assert isinstance(usage.output_tokens, int)
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details is not None and isinstance(usage.input_tokens_details.cached_tokens, int)
    assert usage.output_tokens_details is not None and isinstance(usage.output_tokens_details.reasoning_tokens, int)


def assert_reconciled(gw, upstream, model: str, usage, out_tokens: int, request_id: str | None = None, since: int | None = None):
    """The response's usage equals the upstream's (prompt words of what it was sent,
    ``out_tokens`` out), and the request-log row is billed exactly that."""
    assert_usage_complete(usage)
    rec = upstream.last(upstream_path(model))
    expected_in = upstream_prompt_tokens(model, rec)
    assert usage.input_tokens == expected_in, (usage, rec.body)
    assert usage.output_tokens == out_tokens, usage
    assert usage.input_tokens_details.cached_tokens == 0
    if request_id is not None:
        row = assert_billed(gw, request_id, model, expected_in, out_tokens)
    else:
        row = wait_row_where(gw, since, lambda r: r["served_model"] == model and r["status"] == 200)
        assert row["tokens_in"] == expected_in, dict(row)
        assert row["tokens_out"] == out_tokens, dict(row)
        assert row["cost_nano"] == cost_nano(model, expected_in, out_tokens), dict(row)
    assert row["endpoint"] == "/v1/responses", dict(row)
    return row


def items_of(resp, kind: str) -> list:
    return [it for it in resp.output if it.type == kind]


# --------------------------------------------------------------------------
# Plain and streaming
# --------------------------------------------------------------------------


def test_plain(oai, upstream, multi_gateway, model):
    raw = oai.responses.with_raw_response.create(model=model, instructions=SYSTEM, input=PROMPT, max_output_tokens=100)
    r = raw.parse()
    assert r.object == "response"
    assert r.id.startswith("resp_")
    assert r.status == "completed"
    assert r.output_text == FAKE_CONTENT
    msgs = items_of(r, "message")
    assert len(msgs) == 1 and msgs[0].role == "assistant"
    assert [p.type for p in msgs[0].content] == ["output_text"]
    assert msgs[0].content[0].annotations == []
    assert r.usage.input_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert r.max_output_tokens == 100
    assert r.instructions == SYSTEM
    assert upstream.count() == 1
    assert_reconciled(
        multi_gateway, upstream, model, r.usage, FAKE_COMPLETION_TOKENS, request_id=raw.headers.get("x-request-id")
    )


def test_stream_events(oai, upstream, multi_gateway, model):
    since = max_rowid(multi_gateway)
    events = list(oai.responses.create(model=model, input=PROMPT, stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert sum(t in TERMINAL for t in types) == 1, types
    assert types[-1] == "response.completed", types
    seqs = [e.sequence_number for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    for t in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert t in types, (t, types)
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")
    assert types.index("response.output_text.done") < types.index("response.output_item.done")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == FAKE_CONTENT
    final = events[-1].response
    assert final.status == "completed"
    assert final.output_text == FAKE_CONTENT
    assert events[0].response.id == final.id
    assert upstream.last(upstream_path(model)).body.get("stream") is True
    assert_reconciled(multi_gateway, upstream, model, final.usage, FAKE_COMPLETION_TOKENS, since=since)


def test_stream_helper_final_response(oai, upstream, multi_gateway, model):
    since = max_rowid(multi_gateway)
    with oai.responses.stream(model=model, input=PROMPT, instructions=SYSTEM) as stream:
        types = [e.type for e in stream]
        final = stream.get_final_response()
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert final.output_text == FAKE_CONTENT
    assert final.status == "completed"
    assert final.usage.input_tokens == PROMPT_TOKENS + SYSTEM_TOKENS
    assert_reconciled(multi_gateway, upstream, model, final.usage, FAKE_COMPLETION_TOKENS, since=since)


# --------------------------------------------------------------------------
# Tools over two turns with previous_response_id
# --------------------------------------------------------------------------


def test_function_tool_two_turns(oai, upstream, multi_gateway, model):
    raw = oai.responses.with_raw_response.create(model=model, input=WEATHER_Q, tools=[WEATHER_TOOL])
    r1 = raw.parse()
    calls = items_of(r1, "function_call")
    assert len(calls) == 1, r1.output
    call = calls[0]
    assert call.name == TOOL_NAME
    assert json.loads(call.arguments) == TOOL_ARGS
    assert call.id.startswith("fc_") and call.call_id
    sent = upstream.last(upstream_path(model)).body
    tool_names = [t.get("name") or t.get("function", {}).get("name") for t in sent.get("tools") or []]
    assert tool_names == [TOOL_NAME], sent
    assert_reconciled(
        multi_gateway, upstream, model, r1.usage, TOOL_COMPLETION_TOKENS, request_id=raw.headers.get("x-request-id")
    )

    raw2 = oai.responses.with_raw_response.create(
        model=model,
        previous_response_id=r1.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": TOOL_RESULT}],
        tools=[WEATHER_TOOL],
    )
    r2 = raw2.parse()
    assert r2.output_text == FAKE_CONTENT
    assert r2.previous_response_id == r1.id
    # The gateway rebuilt the whole conversation for the translated upstream.
    sent = upstream.last(upstream_path(model)).body
    flat = json.dumps(sent)
    assert "Paris" in flat and TOOL_RESULT in flat, sent
    if model == OAI:
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "tool"], sent["messages"]
        assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == TOOL_NAME
        assert sent["messages"][2]["tool_call_id"] == sent["messages"][1]["tool_calls"][0]["id"]
    else:
        roles = [m["role"] for m in sent["messages"]]
        assert roles == ["user", "assistant", "user"], sent["messages"]
        kinds = [b["type"] for b in sent["messages"][2]["content"]]
        assert "tool_result" in kinds, sent["messages"]
    assert_reconciled(
        multi_gateway, upstream, model, r2.usage, FAKE_COMPLETION_TOKENS, request_id=raw2.headers.get("x-request-id")
    )


def test_custom_tool_round_trip(oai, upstream, multi_gateway, model):
    r1 = oai.responses.create(
        model=model, input="Add a hello file please [fault:tool:apply_patch]", tools=[PATCH_TOOL]
    )
    calls = items_of(r1, "custom_tool_call")
    assert len(calls) == 1, r1.output
    call = calls[0]
    assert call.name == "apply_patch"
    assert call.input == CUSTOM_TOOL_INPUT
    assert not items_of(r1, "function_call"), r1.output
    sent = upstream.last(upstream_path(model)).body
    names = [t.get("name") or t.get("function", {}).get("name") for t in sent.get("tools") or []]
    assert names == ["apply_patch"], sent

    raw2 = oai.responses.with_raw_response.create(
        model=model,
        previous_response_id=r1.id,
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],
        tools=[PATCH_TOOL],
    )
    r2 = raw2.parse()
    assert r2.output_text == FAKE_CONTENT
    flat = json.dumps(upstream.last(upstream_path(model)).body)
    assert "Done!" in flat and "hello.txt" in flat
    assert_reconciled(
        multi_gateway, upstream, model, r2.usage, FAKE_COMPLETION_TOKENS, request_id=raw2.headers.get("x-request-id")
    )


# --------------------------------------------------------------------------
# Stored state
# --------------------------------------------------------------------------


def test_store_false_is_not_continuable(oai, upstream, model):
    r = oai.responses.create(model=model, input=PROMPT, store=False)
    assert r.output_text == FAKE_CONTENT
    n = upstream.count()
    with pytest.raises(openai.NotFoundError) as ei:
        oai.responses.create(model=model, input="And again", previous_response_id=r.id)
    assert ei.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)
    assert upstream.count() == n


def test_retrieve_input_items_delete(oai, upstream, multi_gateway, model):
    r = oai.responses.create(
        model=model,
        instructions=SYSTEM,
        input=[{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
    )
    before = settle(multi_gateway)
    rows = max_rowid(multi_gateway)
    n = upstream.count()

    got = oai.responses.retrieve(r.id)
    assert got.id == r.id and got.status == "completed"
    assert got.output_text == FAKE_CONTENT
    assert got.usage.input_tokens == r.usage.input_tokens and got.usage.output_tokens == r.usage.output_tokens

    items = oai.responses.input_items.list(r.id)
    assert len(items.data) == 1, items
    item = items.data[0]
    assert item.type == "message" and item.role == "user"
    assert [(c.type, c.text) for c in item.content] == [("input_text", PROMPT)]

    raw = oai.responses.with_raw_response.delete(r.id)
    assert raw.http_response.status_code == 200
    assert raw.http_response.json() == {"id": r.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.input_items.list(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model=model, input="Continue", previous_response_id=r.id)

    # Reads and deletes are not billed and never reach an upstream.
    assert upstream.count() == n
    assert settle(multi_gateway) == before
    charged = multi_gateway.query("SELECT * FROM request_logs WHERE id > ? AND cost_nano <> 0", (rows,))
    assert not charged, [dict(c) for c in charged]


# --------------------------------------------------------------------------
# Errors as SDK exception classes
# --------------------------------------------------------------------------


def test_unknown_model(oai, upstream):
    with pytest.raises(openai.NotFoundError) as ei:
        oai.responses.create(model="no-such/model", input=PROMPT)
    assert ei.value.status_code == 404
    assert ei.value.code == "model_not_found"
    assert upstream.count() == 0


def test_bad_key(multi_gateway, upstream):
    bad = openai.OpenAI(api_key="sk-tg-" + "x" * 43, base_url=multi_gateway.base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.responses.create(model=OAI, input=PROMPT)
    assert ei.value.status_code == 401
    assert ei.value.code == "invalid_api_key"
    assert upstream.count() == 0


def test_insufficient_balance(oai, upstream, multi_gateway, model):
    before = settle(multi_gateway)
    with pytest.raises(openai.APIStatusError) as ei:
        oai.responses.create(model=model, input=PROMPT, max_output_tokens=1_000_000_000)
    assert ei.value.status_code == 402
    assert ei.value.type == "insufficient_quota"
    assert upstream.count() == 0
    assert settle(multi_gateway) == before


# --------------------------------------------------------------------------
# openai-agents: an agent with one function tool, run to completion
# --------------------------------------------------------------------------


def test_agents_sdk_function_tool(multi_gateway, upstream, model):
    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    calls = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        calls.append(city)
        return TOOL_RESULT

    client = AsyncOpenAI(api_key=multi_gateway.api_key, base_url=multi_gateway.base_url, max_retries=0, timeout=30)
    agents.set_default_openai_client(client, use_for_tracing=False)
    agents.set_tracing_disabled(True)
    agent = agents.Agent(
        name="weather",
        instructions=SYSTEM,
        # A model object: the agents SDK would read "fakeoai/" as a provider prefix.
        model=agents.OpenAIResponsesModel(model=model, openai_client=client),
        tools=[get_weather],
    )
    since = max_rowid(multi_gateway)
    result = agents.Runner.run_sync(agent, WEATHER_Q, max_turns=4)
    assert calls == ["Paris"]
    assert result.final_output == FAKE_CONTENT
    reqs = upstream.all(upstream_path(model))
    assert len(reqs) == 2, [r.body for r in reqs]
    assert TOOL_RESULT in json.dumps(reqs[1].body)
    settle(multi_gateway)
    rows = multi_gateway.query("SELECT * FROM request_logs WHERE id > ? ORDER BY id", (since,))
    assert [r["endpoint"] for r in rows] == ["/v1/responses"] * 2, [dict(r) for r in rows]
    assert [r["tokens_out"] for r in rows] == [TOOL_COMPLETION_TOKENS, FAKE_COMPLETION_TOKENS]
    for rec, row in zip(reqs, rows):
        tin = upstream_prompt_tokens(model, rec)
        assert row["tokens_in"] == tin, dict(row)
        assert row["cost_nano"] == cost_nano(model, tin, row["tokens_out"]), dict(row)


@pytest.mark.parametrize("tool", ["function", "custom"])
def test_streamed_tool_call(oai, upstream, multi_gateway, model, tool):
    """Streamed tool calls: argument (or custom input) deltas, then the done event, the
    item in the final response, billed at the upstream's tool-call usage."""
    since = max_rowid(multi_gateway)
    if tool == "function":
        events = list(oai.responses.create(model=model, input=WEATHER_Q, tools=[WEATHER_TOOL], stream=True))
        delta_t, done_t, item_t = (
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "function_call",
        )
        want = json.dumps(TOOL_ARGS)
    else:
        events = list(
            oai.responses.create(
                model=model, input="Add a hello file please [fault:tool:apply_patch]", tools=[PATCH_TOOL], stream=True
            )
        )
        delta_t, done_t, item_t = (
            "response.custom_tool_call_input.delta",
            "response.custom_tool_call_input.done",
            "custom_tool_call",
        )
        want = CUSTOM_TOOL_INPUT
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert sum(t in TERMINAL for t in types) == 1 and types[-1] == "response.completed", types
    assert delta_t in types and done_t in types, types
    streamed = "".join(e.delta for e in events if e.type == delta_t)
    done = [e for e in events if e.type == done_t][0]
    got = done.arguments if tool == "function" else done.input
    if tool == "function":
        assert json.loads(streamed) == TOOL_ARGS and json.loads(got) == TOOL_ARGS
    else:
        assert streamed == want and got == want
    final = events[-1].response
    items = items_of(final, item_t)
    assert len(items) == 1, final.output
    assert_reconciled(multi_gateway, upstream, model, final.usage, TOOL_COMPLETION_TOKENS, since=since)
