"""Anthropic inbound, current: what Claude Code sends today (mid-conversation system messages,
adaptive thinking, ``output_config.effort``, ``context_management``, a JSON-string ``metadata.user_id``,
``?beta=true``) is accepted on every backend; each field passes through to Anthropic and is mapped
(or dropped) elsewhere, never refused."""

from __future__ import annotations

import httpx2 as httpx
import pytest
from conftest import GatewayServer

from aigateway import neutral
from aigateway.formats import anthropic, gemini, openai, responses

BACKENDS = ("openai", "responses", "anthropic", "gemini")
PATHS = {"openai": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages"}
REMINDER = "The user prefers short answers."
# The shape of a Claude Code 2.1 request (second turn, after a tool call), trimmed.
BODY = {
    "model": "claude-sonnet-4-20250514", "max_tokens": 32000, "stream": False,
    "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": '{"device_id":"ab12","account_uuid":"","session_id":"s-1"}'},
    "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197;"},
               {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "description": "Read a file",
               "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                                "required": ["file_path"], "additionalProperties": False}}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                                     {"type": "text", "text": "read a.txt", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": REMINDER},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should read it.", "signature": "sig-from-anthropic"},
            {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "a.txt"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "hello file",
                                      "cache_control": {"type": "ephemeral"}}]},
    ],
}


@pytest.fixture(scope="module")
def keys(gateway: GatewayServer) -> dict[str, str]:
    return {b: gateway.add_client(f"current-{b}", provider=f"fake-{b}") for b in BACKENDS}


def upstream_body(fake_requests, backend: str) -> dict:
    sent = [r for r in fake_requests() if r["method"] == "POST" and (
        r["path"] == PATHS[backend] if backend in PATHS else r["path"].endswith("generateContent"))]
    assert len(sent) == 1, sent
    return sent[0]["body"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_claude_code_request_is_answered_on_every_backend(gateway, keys, fake_requests, backend):
    r = httpx.post(gateway.url + "/v1/messages?beta=true", json=BODY, timeout=30, headers={
        "x-api-key": keys[backend], "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,mid-conversation-system-2026-04-07,effort-2025-11-24"})
    assert r.status_code == 200, r.text
    answer = r.json()["content"][-1]["text"]
    assert "Tool Read returned: " in answer and "hello file" in answer, answer
    sent = upstream_body(fake_requests, backend)
    if backend == "anthropic":  # passed through: every field as the client sent it
        for field in ("thinking", "output_config", "context_management", "metadata"):
            assert sent[field] == BODY[field]
        assert sent["messages"][1] == {"role": "system", "content": REMINDER}
    elif backend == "openai":  # effort mapped, the system message kept in place
        assert sent["reasoning_effort"] == "high" and "context_management" not in sent
        roles = [m["role"] for m in sent["messages"]]
        at = sent["messages"].index({"role": "system", "content": REMINDER})
        assert roles[at - 1:at + 2] == ["user", "system", "assistant"], roles
    elif backend == "responses":
        assert sent["reasoning"] == {"effort": "high", "summary": "auto"}  # a summary, or no thinking is seen
        assert sent["input"][1]["role"] == "developer" and sent["input"][1]["content"][0]["text"] == REMINDER
    else:  # Gemini has no system message in a conversation: the instruction is user text in place
        assert sent["generationConfig"]["thinkingConfig"]["thinkingBudget"] == gemini.EFFORT_BUDGETS["high"]
        texts = [p.get("text", "") for c in sent["contents"] for p in c["parts"]]
        assert f"<system-reminder>\n{REMINDER}\n</system-reminder>" in texts, texts


def test_the_block_form_ends_its_turn_as_a_system_message():
    block = {"type": "mid_conv_system", "content": [{"type": "text", "text": "be kind"}]}
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, block]}]}
    req = anthropic.decode_request(body, neutral.Route())
    assert [(m.role, neutral.message_text(m)) for m in req.messages] == [("user", "hi"), ("system", "be kind")]
    _, chat = openai.encode_request(req, neutral.Policy("m"))
    assert chat["messages"][-1] == {"role": "system", "content": "be kind"}
    _, items = responses.encode_request(req, neutral.Policy("m"))
    assert items["input"][-1]["role"] == "developer"


def test_a_system_message_may_not_come_first():
    body = {"max_tokens": 10, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}
    with pytest.raises(neutral.GatewayError) as caught:
        anthropic.decode_request(body, neutral.Route())
    assert caught.value.status == 400 and caught.value.param == "messages.0"


@pytest.mark.parametrize("thinking, model, effort", [
    ({"type": "enabled", "budget_tokens": 1024}, "gpt-5", "low"),
    ({"type": "enabled", "budget_tokens": 8000}, "o3", "medium"),
    ({"type": "enabled", "budget_tokens": 20000}, "gpt-5", "high"),
    ({"type": "enabled", "budget_tokens": 20000}, "gpt-4o", None),  # OpenAI refuses an effort there
    ({"type": "enabled", "budget_tokens": 20000}, "openai/gpt-4.1-mini", None),
    ({"type": "disabled"}, "gpt-5", None),
])
def test_a_thinking_budget_is_an_effort_bucket(thinking, model, effort):
    """Anthropic's budget_tokens as OpenAI's effort (chat completions and Responses alike); dropped
    for OpenAI's models without reasoning, which answer 400 to any effort."""
    body = {"max_tokens": 30000, "thinking": thinking, "messages": [{"role": "user", "content": "hi"}]}
    req = anthropic.decode_request(body, neutral.Route())
    req.model = model
    _, chat = openai.encode_request(req, neutral.Policy(model))
    _, items = responses.encode_request(req, neutral.Policy(model))
    assert chat.get("reasoning_effort") == effort
    assert (items.get("reasoning") or {}).get("effort") == effort
