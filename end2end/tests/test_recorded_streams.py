"""Recorded streams of real providers through tokengate, read by the real SDKs.

Each stream in ``server/tests/fixtures/streams/`` (OpenAI, Anthropic, OpenRouter,
DeepSeek, Groq, Mistral, vLLM, llama-cpp-python: comments, pings, CRLF, trailing spaces,
reasoning fields, usage in the finish chunk, in a trailing chunk, cumulative or only in
``x_groq``) is replayed byte for byte by the fake upstream (``[fault:replay:NAME]`` pinned
to a provider of the stream's format) and requested through both client formats: the
openai SDK on ``/v1/chat/completions`` (with ``include_usage``) and the anthropic SDK's
message stream on ``/v1/messages``. The text, the tool calls, the stop reason and the
usage must arrive as the manifest says, and the request log must bill the upstream's
usage.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anthropic
import openai
import pytest

from conftest import _provider_toml, start_gateway, stop_gateway
from e2e_helpers import wait_row
from fake_upstream import ANTHROPIC_KEY, OPENAI_KEY, RECORDED_STREAMS_DIR

MANIFEST = json.loads((RECORDED_STREAMS_DIR / "manifest.json").read_text())
FIXTURES = {m["file"].removesuffix(".sse"): m for m in MANIFEST}
FINISH_TO_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def model_of(name: str) -> str:
    return f"rec_{name}/m"


@pytest.fixture(scope="module")
def replay_gateway(fake_upstream):
    parts = []
    for name, m in FIXTURES.items():
        kind = "openai" if m["format"] == "openai" else "anthropic"
        key = OPENAI_KEY if kind == "openai" else ANTHROPIC_KEY
        parts.append(_provider_toml(f"rec_{name}", kind, fake_upstream.fault_base_url(f"replay:{name}"), key))
        parts.append(
            "[[models]]\n"
            f'name = "{model_of(name)}"\nprovider = "rec_{name}"\nupstream_model = "m"\n'
            'input_usd_per_m = "1"\noutput_usd_per_m = "2"\n'
            'cache_read_usd_per_m = "0.1"\ncache_write_usd_per_m = "1.25"\n'
            "max_output_tokens = 4096\n"
        )
    with tempfile.TemporaryDirectory(prefix="tokengate-e2e-replay-") as tmp:
        gw = start_gateway(Path(tmp), "\n".join(parts))
        try:
            yield gw
        finally:
            stop_gateway(gw, "replay_gateway")


def expected_usage(m: dict) -> dict | None:
    return m["usage"]


def assert_logged(gw, request_id: str, m: dict) -> None:
    row = wait_row(gw, request_id)
    assert row["status"] == 200, dict(row)
    u = expected_usage(m)
    if u is None:
        # No usage from the upstream: billed on tokengate's estimate, never zero output.
        assert row["tokens_out"] > 0, dict(row)
        return
    assert (row["tokens_in"], row["tokens_out"], row["cached_tokens"]) == (
        u["input"] + u["cache_read"] + u["cache_write"],
        u["output"],
        u["cache_read"] + u["cache_write"],
    ), dict(row)
    assert row["cost_nano"] > 0


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_openai_sdk_reads_recorded_stream(replay_gateway, name):
    m = FIXTURES[name]
    client = openai.OpenAI(api_key=replay_gateway.api_key, base_url=replay_gateway.base_url, max_retries=0, timeout=30)
    stream = client.chat.completions.create(
        model=model_of(name),
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = stream.response.headers["x-request-id"]
    text, tools, finish, usage = "", {}, None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                text += choice.delta.content
            for tc in choice.delta.tool_calls or []:
                t = tools.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    t["id"] = tc.id
                if tc.function and tc.function.name:
                    t["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    t["arguments"] += tc.function.arguments
            if choice.finish_reason:
                finish = choice.finish_reason
    assert text == m["text"]
    got_tools = [
        {"id": t["id"], "name": t["name"], "arguments": json.loads(t["arguments"] or "{}")}
        for _, t in sorted(tools.items())
    ]
    assert got_tools == m["tool_calls"]
    assert finish == m["finish_reason"]
    u = expected_usage(m)
    if u is not None:
        assert usage is not None, "no usage reached the client"
        assert usage.prompt_tokens == u["input"] + u["cache_read"] + u["cache_write"]
        assert usage.completion_tokens == u["output"]
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        assert (cached or 0) == u["cache_read"]
    assert_logged(replay_gateway, request_id, m)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_anthropic_sdk_reads_recorded_stream(replay_gateway, name):
    m = FIXTURES[name]
    client = anthropic.Anthropic(api_key=replay_gateway.api_key, base_url=replay_gateway.url, max_retries=0, timeout=30)
    with client.messages.stream(model=model_of(name), max_tokens=1024, messages=MESSAGES) as stream:
        request_id = stream.response.headers["x-request-id"]
        final = stream.get_final_message()
    text = "".join(b.text for b in final.content if b.type == "text")
    assert text == m["text"]
    tools = [{"id": b.id, "name": b.name, "arguments": b.input} for b in final.content if b.type == "tool_use"]
    assert tools == m["tool_calls"]
    assert final.stop_reason == FINISH_TO_STOP[m["finish_reason"]]
    u = expected_usage(m)
    if u is not None:
        assert final.usage.input_tokens == u["input"], final.usage
        assert final.usage.output_tokens == u["output"], final.usage
        assert (final.usage.cache_read_input_tokens or 0) == u["cache_read"], final.usage
        assert (final.usage.cache_creation_input_tokens or 0) == u["cache_write"], final.usage
    assert_logged(replay_gateway, request_id, m)
