"""Acceptance run: the official openai, anthropic and google-genai SDKs, used the way a new user
would, against a gateway whose providers all point at an independently written upstream
(``upstream.py`` here, not the project's fake).

Starts the upstream and a gateway in a temp folder (first run writes config.yaml; the providers are
then edited in, as the README says, and the per-minute rate limits turned off: the run sends more than
60 requests a client; quotas keep their defaults), creates clients with the CLI, and drives every
SDK against every backend: plain, streamed, system prompt, multi-turn, image, tool round trips
(streamed arguments included), JSON mode, structured output, max-tokens stop, thinking, upstream
errors (SDK exception type, status, retry delay), errors in mid-stream, model listings and token
counts. A fifth backend is an ``openai`` provider with ``api: responses`` (the upstream's Responses
API). The openai SDK's Responses API (``responses.create``, ``responses.stream``, a function-tool
round trip) runs against every backend, and embeddings (openai ``embeddings.create``: base64, floats,
dimensions, token arrays; google-genai ``embed_content``; Gemini ``:embedContent``) against each,
an Anthropic backend refusing them. For each answer the usage the SDK sees and the request-log row
(inbound format, endpoint) are checked against what the upstream reported. Gateway bugs found and
reported but not yet fixed are listed in ``KNOWN``: their checks print as KNOWN and do not fail the
run (until they pass). Loopback only; takes under a minute and a half.

    python contrib/acceptance/run.py [-k SUBSTRING] [-v]
"""

from __future__ import annotations

import argparse
import base64
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import openai
import yaml
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # contrib/procs.py
import upstream as up  # noqa: E402  (the expected values come from the upstream's own constants)
from procs import start  # noqa: E402

BACKENDS = ("openai", "anthropic", "gemini", "compat", "responses")  # responses: an OpenAI Responses API upstream
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5-20250929", "gemini": "gemini-2.5-flash",
          "compat": "llama3.2", "responses": "gpt-4o"}
SDKS = ("openai", "anthropic", "genai-v1beta", "genai-v1", "genai-default")  # default: the SDK's own choice
# The Responses backend differs from the others in its upstream only: one Gemini API version is enough there.
BACKEND_SDKS = {"responses": ("openai", "anthropic", "genai-v1beta")}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2  # base64 of it has '+' and '/'
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
           "required": ["city"], "additionalProperties": False}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}, "city": {"type": "string"}},
          "required": ["answer", "city"], "additionalProperties": False}
ERRORS = {"openai": (429, 500, 503, 400), "compat": (429, 500, 400), "anthropic": (429, 500, 529, 400),
          "gemini": (429, 500, 503, 400), "responses": (429, 500, 503, 400)}
TOOL_RESULT = '{"temp_c": 4, "sky": "cloudy"}'
RESPONSES_TOOL = {"type": "function", "name": "get_weather", "description": "Weather", "parameters": WEATHER,
                  "strict": False}  # the Responses API's default is strict, which WEATHER (unit optional) is not
EMBED_MODELS = {"openai": "text-embedding-3-small", "responses": "text-embedding-3-large", "compat": "nomic-embed-text",
                "gemini": "gemini-embedding-001", "anthropic": "voyage-3.5"}
EMBED_TEXTS = ["Héllo wörld 👋", "日本語のテキスト, ok.", "x"]
TOKEN_INPUTS = [[9906, 1917, 0], [15339]]


@dataclass(frozen=True)
class Usage:
    """Normalised usage (OpenAI's way): input includes cache, output includes reasoning."""

    input: int
    output: int
    cached: int = 0
    cache_write: int = 0
    reasoning: int = 0


def upstream_usage(backend: str, scenario: str) -> Usage:
    """What the upstream reports for ``backend``, normalised."""
    if backend == "openai":
        u = up.OPENAI_USAGE
        return Usage(u["prompt_tokens"], u["completion_tokens"], u["prompt_tokens_details"]["cached_tokens"],
                     0, u["completion_tokens_details"]["reasoning_tokens"])
    if backend == "compat":
        return Usage(up.COMPAT_USAGE["prompt_tokens"], up.COMPAT_USAGE["completion_tokens"])
    if backend == "responses":
        u = up.RESPONSES_USAGE
        return Usage(u["input_tokens"], u["output_tokens"], u["input_tokens_details"]["cached_tokens"], 0,
                     u["output_tokens_details"]["reasoning_tokens"])
    if backend == "anthropic":
        u = up.ANTHROPIC_USAGE
        return Usage(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"],
                     u["output_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"])
    u = up.GEMINI_USAGE
    thoughts = u["thoughtsTokenCount"] if scenario == "thinking" else 0
    return Usage(u["promptTokenCount"], u["candidatesTokenCount"] + thoughts, 0, 0, thoughts)


# ---------------------------------------------------------------- processes


def gateway_cli(config: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "aigateway", *args, "--config", str(config), "--json"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class World:
    """The upstream, the gateway, its config and one client per backend."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http = httpx.Client(timeout=30)  # one client: a new one per call costs ~50 ms
        self.upstream = start("acceptance upstream", [sys.executable, str(HERE / "upstream.py"), "--port", "0"],
                              timeout=30)
        self.config = folder / "config.yaml"
        first = start("gateway (first run)", [sys.executable, "-m", "aigateway", "run", "--config", str(self.config),
                                              "--port", "0", "--host", "127.0.0.1"], cwd=ROOT, timeout=30)
        # (the first run writes the default config.yaml)
        first.stop()
        data = yaml.safe_load(self.config.read_text())
        u = self.upstream.url
        data["providers"] = {
            "acc-openai": {"type": "openai", "api_key": "sk-upstream-openai-0123456789", "base_url": u + "/openai/v1",
                           "default_model": "gpt-4o", "timeout_seconds": 20},
            "acc-anthropic": {"type": "anthropic", "api_key": "sk-ant-upstream-0123456789",
                              "base_url": u + "/anthropic", "default_model": MODELS["anthropic"],
                              "timeout_seconds": 20},
            "acc-gemini": {"type": "gemini", "api_key": "gemini-upstream-0123456789", "base_url": u + "/gemini",
                           "default_model": MODELS["gemini"], "timeout_seconds": 20},
            "acc-compat": {"type": "openai_compatible", "base_url": u + "/compat/v1", "default_model": "llama3.2",
                           "timeout_seconds": 20},
            "acc-responses": {"type": "openai", "api": "responses", "api_key": "sk-upstream-responses-0123456789",
                              "base_url": u + "/openai/v1", "default_model": "gpt-4o", "timeout_seconds": 20},
        }
        for kind in ("openai", "anthropic", "gemini", "responses"):  # the provider refuses the gateway's key: a 502
            bad = dict(data["providers"][f"acc-{kind}"], api_key="wrong-key-0123456789")
            data["providers"][f"acc-badkey-{kind}"] = bad
        for key in data["defaults"]["rate_limit"]:  # the run sends ~150 requests a client in a minute
            data["defaults"]["rate_limit"][key] = 0
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))
        self.gateway = start("gateway", [sys.executable, "-m", "aigateway", "run", "--config", str(self.config),
                                         "--port", "0", "--host", "127.0.0.1"], cwd=ROOT, timeout=30)
        names = [*BACKENDS, "badkey-openai", "badkey-anthropic", "badkey-gemini", "badkey-responses"]
        self.keys = {b: gateway_cli(self.config, "client", "add", "--name", f"acc-{b}", "--provider", f"acc-{b}")
                     ["api_key"] for b in names}
        self.db = folder / "data" / "gateway.db"
        for key in self.keys.values():
            self.wait_for_key(key)

    def wait_for_key(self, key: str) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = self.http.get(self.gateway.url + "/health")
            if r.status_code == 200 and self.http.post(self.gateway.url + "/v1/chat/completions", json={},
                                                   headers={"Authorization": f"Bearer {key}"}).status_code != 401:
                return
            time.sleep(0.1)
        raise RuntimeError("the gateway did not accept a new key")

    def scenario(self, name: str, **extra: Any) -> None:
        self.http.post(self.upstream.url + "/_ctl/scenario", json={"name": name, **extra})
        self.http.delete(self.upstream.url + "/_ctl/requests")

    def received(self) -> list[dict]:
        return [r for r in self.http.get(self.upstream.url + "/_ctl/requests").json()["requests"] if r["body"]]

    def log_rows(self, backend: str) -> list[dict]:
        conn = sqlite3.connect(self.db)
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute("SELECT * FROM request_log WHERE client_name = ? ORDER BY id",
                                              (f"acc-{backend}",))]
        conn.close()
        return rows

    def stop(self) -> None:
        self.http.close()
        self.gateway.stop()
        self.upstream.stop()


# ---------------------------------------------------------------- SDK adapters: one shape for every SDK


@dataclass
class Answer:
    text: str
    finish: str  # normalised: stop, length, tool_calls
    calls: list[tuple[str, str, dict]]  # (id, name, args)
    usage: dict  # as the SDK reports it, in its own names
    thinking: str = ""
    raw: Any = None


class Driver:
    """One SDK bound to one backend's key."""

    def __init__(self, sdk: str, backend: str, world: World) -> None:
        self.sdk, self.backend, self.world = sdk, backend, world
        key, url = world.keys[backend], world.gateway.url
        self.model = MODELS.get(backend, "")
        if sdk == "openai":
            self.client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
        elif sdk == "anthropic":
            self.client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
        else:
            options: dict[str, Any] = {"base_url": url}
            if sdk.split("-")[1] != "default":
                options["api_version"] = sdk.split("-")[1]
            self.client = genai.Client(api_key=key, http_options=options)

    # -- requests in the SDK's own vocabulary
    def ask(self, turns: list[tuple[str, Any]], *, stream: bool = False, system: str | None = None,
            tools: bool = False, json_mode: str | None = None, max_tokens: int | None = None,
            thinking: bool = False) -> Answer:
        return getattr(self, "_" + self.sdk.split("-")[0])(turns, stream, system, tools, json_mode, max_tokens,
                                                           thinking)

    def _openai(self, turns, stream, system, tools, json_mode, max_tokens, thinking) -> Answer:
        messages: list[dict] = [{"role": "system", "content": system}] if system else []
        for role, content in turns:
            if role == "image":
                url = "data:image/png;base64," + base64.b64encode(PNG).decode()
                messages.append({"role": "user", "content": [{"type": "text", "text": content},
                                                             {"type": "image_url", "image_url": {"url": url}}]})
            elif role == "call":
                messages.append({"role": "assistant", "content": None, "tool_calls": [
                    {"id": c[0], "type": "function", "function": {"name": c[1], "arguments": json.dumps(c[2])}}
                    for c in content]})
            elif role == "result":
                messages += [{"role": "tool", "tool_call_id": i, "content": text} for i, text in content]
            else:
                messages.append({"role": role, "content": content})
        kw: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:
            kw["tools"] = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                             "parameters": WEATHER}}]
        if json_mode == "object":
            kw["response_format"] = {"type": "json_object"}
        elif json_mode == "schema":
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
        if max_tokens:
            kw["max_completion_tokens"] = max_tokens
        if thinking:
            kw["reasoning_effort"] = "low"
        if not stream:
            r = self.client.chat.completions.create(**kw)
            msg = r.choices[0].message
            calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in msg.tool_calls or ()]
            return Answer(msg.content or "", r.choices[0].finish_reason, calls, r.usage.model_dump(),
                          getattr(msg, "reasoning_content", None) or "", r)
        chunks = list(self.client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
        text, finish, usage, calls = "", "", {}, {}
        for c in chunks:
            if c.usage:
                usage = c.usage.model_dump()
                assert c.choices == [], "the usage chunk must have choices: []"
            for ch in c.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
                for tc in ch.delta.tool_calls or ():
                    entry = calls.setdefault(tc.index, [tc.id, "", ""])
                    entry[1] += (tc.function.name or "") if tc.function else ""
                    entry[2] += (tc.function.arguments or "") if tc.function else ""
        assert len({c.id for c in chunks}) == 1, "every chunk must repeat the same id"
        return Answer(text, finish, [(i, n, json.loads(a)) for i, n, a in calls.values()], usage, "", chunks)

    def _anthropic(self, turns, stream, system, tools, json_mode, max_tokens, thinking) -> Answer:
        messages: list[dict] = []
        for role, content in turns:
            if role == "image":
                messages.append({"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": base64.b64encode(PNG).decode()}},
                    {"type": "text", "text": content}]})
            elif role == "call":
                messages.append({"role": "assistant", "content": [
                    {"type": "tool_use", "id": c[0], "name": c[1], "input": c[2]} for c in content]})
            elif role == "result":
                messages.append({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": i, "content": text} for i, text in content]})
            else:
                messages.append({"role": role, "content": content})
        kw: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens or 1024}
        if system:
            kw["system"] = system
        if tools:
            kw["tools"] = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER}]
        if json_mode == "schema":
            kw["output_config"] = {"format": {"type": "json_schema", "schema": SCHEMA}}
        elif json_mode == "object":
            kw["system"] = (system or "") + "Answer in JSON."
        if thinking:
            kw["thinking"] = {"type": "enabled", "budget_tokens": 1024}
            kw["max_tokens"] = 4096
        if stream:
            with self.client.messages.stream(**kw) as s:
                events = list(s)
                m = s.get_final_message()
        else:
            m = self.client.messages.create(**kw)
            events = None
        text = "".join(b.text for b in m.content if b.type == "text")
        think = "".join(b.thinking for b in m.content if b.type == "thinking")
        calls = [(b.id, b.name, b.input) for b in m.content if b.type == "tool_use"]
        finish = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}.get(m.stop_reason,
                                                                                             m.stop_reason)
        return Answer(text, finish, calls, m.usage.model_dump(), think, (m, events))

    def _genai(self, turns, stream, system, tools, json_mode, max_tokens, thinking) -> Answer:
        contents: list[types.Content] = []
        for role, content in turns:
            if role == "image":
                contents.append(types.Content(role="user", parts=[
                    types.Part.from_text(text=content), types.Part.from_bytes(data=PNG, mime_type="image/png")]))
            elif role == "call":  # replayed as received: id and thought signature included
                contents.append(types.Content(role="model", parts=[types.Part(
                    function_call=types.FunctionCall(id=c[0], name=c[1], args=c[2]),
                    thought_signature=c[3] if len(c) > 3 else None) for c in content]))
            elif role == "result":
                contents.append(types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
                    id=i, name="get_weather", response={"result": text})) for i, text in content]))
            else:
                contents.append(types.Content(role="model" if role == "assistant" else "user",
                                              parts=[types.Part.from_text(text=content)]))
        cfg: dict[str, Any] = {}
        if system:
            cfg["system_instruction"] = system
        if tools:
            cfg["tools"] = [types.Tool(function_declarations=[types.FunctionDeclaration(
                name="get_weather", description="Weather", parameters_json_schema=WEATHER)])]
            cfg["automatic_function_calling"] = types.AutomaticFunctionCallingConfig(disable=True)
        if json_mode == "object":
            cfg["response_mime_type"] = "application/json"
        elif json_mode == "schema":
            cfg["response_mime_type"] = "application/json"
            cfg["response_json_schema"] = SCHEMA
        if max_tokens:
            cfg["max_output_tokens"] = max_tokens
        if thinking:
            cfg["thinking_config"] = types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)
        config = types.GenerateContentConfig(**cfg) if cfg else None
        if stream:
            chunks = list(self.client.models.generate_content_stream(model=self.model, contents=contents,
                                                                     config=config))
        else:
            chunks = [self.client.models.generate_content(model=self.model, contents=contents, config=config)]
        text = think = ""
        finish, usage, calls = "", {}, []
        for c in chunks:
            for cand in c.candidates or ():
                for p in (cand.content.parts if cand.content else None) or ():
                    if p.text and p.thought:
                        think += p.text
                    elif p.text:
                        text += p.text
                    if p.function_call:
                        calls.append((p.function_call.id, p.function_call.name, dict(p.function_call.args or {}),
                                      p.thought_signature))
                if cand.finish_reason:
                    finish = cand.finish_reason.value if hasattr(cand.finish_reason, "value") else cand.finish_reason
            if c.usage_metadata:
                usage = c.usage_metadata.model_dump(exclude_none=True)
        finish = {"STOP": "tool_calls" if calls else "stop", "MAX_TOKENS": "length"}.get(finish, finish)
        return Answer(text, finish, calls, usage, think, chunks)

    def respond(self, items: list, *, stream: bool = False, tools: bool = False, instructions: str | None = None,
                max_tokens: int | None = None) -> Answer:
        """The Responses API (openai SDK): ``items`` are input items (messages, an earlier response's
        output items, function_call_output items); streamed with ``responses.stream``."""
        kw: dict[str, Any] = {"model": self.model, "input": items}
        if tools:
            kw["tools"] = [RESPONSES_TOOL]
        if instructions:
            kw["instructions"] = instructions
        if max_tokens:
            kw["max_output_tokens"] = max_tokens
        events = None
        if stream and max_tokens:  # the SDK's stream helper has a final response only after response.completed
            events = list(self.client.responses.create(**kw, stream=True))
            r = events[-1].response
        elif stream:
            with self.client.responses.stream(**kw) as s:
                events = list(s)
                r = s.get_final_response()
        if events is not None:
            seq = [e.sequence_number for e in events]
            expect(seq == list(range(len(events))), f"sequence numbers {seq}")
            kinds = [e.type for e in events]
            terminal = "response.incomplete" if r.status == "incomplete" else "response.completed"
            expect(kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == terminal
                   and kinds.count(terminal) == 1, f"events {kinds}")
            deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
            expect(deltas == r.output_text, f"text deltas {deltas!r} != {r.output_text!r}")
            for e in events:
                if e.type == "response.function_call_arguments.done":
                    expect(e.arguments == r.output[e.output_index].arguments, "arguments .done differ from the item's")
        else:
            r = self.client.responses.create(**kw)
        expect(r.id.startswith("resp_") and r.object == "response", f"response {r.id!r} {r.object!r}")
        ids = [o.id for o in r.output]
        expect(len(set(ids)) == len(ids), f"output items share an id: {ids}")
        calls = [(o.call_id, o.name, json.loads(o.arguments)) for o in r.output if o.type == "function_call"]
        finish = "tool_calls" if calls else {"completed": "stop", "incomplete": "length"}.get(r.status or "", r.status)
        u = r.usage
        usage = {"input": u.input_tokens, "output": u.output_tokens, "total": u.total_tokens,
                 "cached": u.input_tokens_details.cached_tokens, "reasoning": u.output_tokens_details.reasoning_tokens}
        return Answer(r.output_text, finish or "", calls, usage, "", (r, events))

    # -- usage in the SDK's own names
    def expected_usage(self, u: Usage) -> dict:
        if self.sdk == "openai":
            return {"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output,
                    "cached": u.cached, "reasoning": u.reasoning}
        if self.sdk == "anthropic":
            return {"input_tokens": u.input - u.cached - u.cache_write, "output_tokens": u.output,
                    "cache_read_input_tokens": u.cached, "cache_creation_input_tokens": u.cache_write}
        out = {"prompt_token_count": u.input, "candidates_token_count": u.output - u.reasoning,
               "total_token_count": u.input + u.output}
        if u.reasoning:
            out["thoughts_token_count"] = u.reasoning
        if u.cached:
            out["cached_content_token_count"] = u.cached
        return out

    def seen_usage(self, usage: dict) -> dict:
        if self.sdk == "openai":
            return {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                    "total_tokens": usage.get("total_tokens"),
                    "cached": ((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
                    "reasoning": ((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)}
        if self.sdk == "anthropic":
            return {k: usage.get(k) or 0 for k in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                                                   "cache_creation_input_tokens")}
        keys = ("prompt_token_count", "candidates_token_count", "total_token_count", "thoughts_token_count",
                "cached_content_token_count")
        return {k: usage[k] for k in keys if usage.get(k)}

    def refusal_finish(self) -> str:
        """How each SDK says "the model refused" (OpenAI: finish stop + message.refusal)."""
        return {"openai": "stop", "anthropic": "refusal"}.get(self.sdk, "SAFETY")

    def refusal_text(self, a: Answer) -> str:
        if self.sdk != "openai":
            return a.text
        if isinstance(a.raw, list):
            return "".join(ch.delta.refusal or "" for c in a.raw for ch in c.choices)
        return a.raw.choices[0].message.refusal or ""

    def error_class(self, status: int) -> tuple[type, int]:
        """The exception an SDK user expects for an upstream ``status`` (and the status it carries)."""
        if self.sdk == "openai":
            status = 503 if status == 529 else status
            return {429: openai.RateLimitError, 400: openai.BadRequestError}.get(status, openai.InternalServerError), \
                status
        if self.sdk == "anthropic":
            return {429: anthropic.RateLimitError, 400: anthropic.BadRequestError, 529: anthropic.OverloadedError,
                    503: anthropic.ServiceUnavailableError}.get(status, anthropic.InternalServerError), status
        status = 503 if status == 529 else status
        return (genai_errors.ClientError if status < 500 else genai_errors.ServerError), status


# ---------------------------------------------------------------- checks

RESULTS: list[tuple[str, str, str, str]] = []  # (sdk, backend, case, outcome)

# Gateway bugs this run found, reported and left to be fixed in the gateway: (sdk, backend, case) ->
# what is wrong ("*" matches any). Such a check that fails is "KNOWN", not a failure; one that
# passes fails the run until its entry is removed, so the list stays true.
KNOWN: dict[tuple[str, str, str], str] = {}


def known_bug(sdk: str, backend: str, case: str) -> str | None:
    for (k_sdk, k_backend, k_case), why in KNOWN.items():
        if k_sdk in ("*", sdk) and k_backend in ("*", backend) and k_case in ("*", case):
            return why
    return None


def check(sdk: str, backend: str, case: str, fn: Callable[[], None], verbose: bool) -> None:
    why = known_bug(sdk, backend, case)
    try:
        fn()
        RESULTS.append((sdk, backend, case, "ok" if why is None else
                        f"FAIL passes now: remove its KNOWN entry ({why})"))
    except Exception as exc:  # noqa: BLE001  (every failure is a finding to report)
        detail = f"{type(exc).__name__}: {exc}"
        RESULTS.append((sdk, backend, case, ("FAIL " if why is None else f"KNOWN {why}: ") + detail[:400]))
        if verbose:
            traceback.print_exc()
        time.sleep(0.2)  # a check that stopped early: let its log rows land before the next one counts rows


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def last_row(world: World, backend: str, before: int) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = world.log_rows(backend)
        if len(rows) > before:
            expect(len(rows) == before + 1, f"{len(rows) - before} log rows for one request")
            return rows[-1]
        time.sleep(0.05)
    raise AssertionError("no request-log row")


INBOUND = {"openai": "openai", "anthropic": "anthropic", "genai": "gemini"}  # request_log.inbound of each SDK


def answered(d: Driver, scenario: str, case: Callable[[], Answer], expected_text: str | None = None,
             finish: str = "stop", usage_scenario: str | None = None, api: str = "chat") -> Answer:
    """Run one answered request; check text, finish, the SDK's usage and the request-log row.
    ``api="responses"``: ``case`` used the Responses API (``Driver.respond``)."""
    world = d.world
    before = len(world.log_rows(d.backend))
    a = case()
    if expected_text is not None:
        expect(a.text == expected_text, f"text {a.text!r} != {expected_text!r}")
    expect(a.finish == finish, f"finish {a.finish!r} != {finish!r}")
    u = upstream_usage(d.backend, usage_scenario or scenario)
    if api == "responses":
        seen, want = a.usage, {"input": u.input, "output": u.output, "total": u.input + u.output, "cached": u.cached,
                               "reasoning": u.reasoning}
    else:
        seen, want = d.seen_usage(a.usage), d.expected_usage(u)
    expect(seen == want, f"SDK usage {seen} != {want}")
    row = last_row(world, d.backend, before)
    logged = (row["status"], row["input_tokens"], row["output_tokens"], row["cached_tokens"], row["estimated"],
              row["inbound"], row["endpoint"])
    inbound = "responses" if api == "responses" else INBOUND[d.sdk.split("-")[0]]
    want_row = (200, u.input, u.output, u.cached, 0, inbound, "chat")
    expect(logged == want_row, f"log row {logged} != {want_row}")
    return a


def upstream_body(world: World) -> dict:
    chats = [r for r in world.received() if r["method"] == "POST"]
    expect(len(chats) == 1, f"{len(chats)} upstream requests")
    return chats[0]["body"]


def system_seen(backend: str, body: dict) -> str:
    if backend == "responses":  # instructions, then any system / developer messages
        texts = [body["instructions"]] if body.get("instructions") else []
        for item in up.responses_items(body):
            if item.get("role") in ("system", "developer"):
                c = item["content"]
                texts.append(c if isinstance(c, str) else "".join(p["text"] for p in c))
        return "\n".join(texts)
    if backend in ("openai", "compat"):
        return "\n".join(m["content"] for m in body["messages"] if m["role"] in ("system", "developer"))
    if backend == "anthropic":
        s = body.get("system") or ""
        return s if isinstance(s, str) else "\n".join(b["text"] for b in s)
    si = body.get("systemInstruction") or body.get("system_instruction") or {}
    return "\n".join(p["text"] for p in si.get("parts", []))


def roles_seen(backend: str, body: dict) -> list[str]:
    if backend == "responses":
        return [i["role"] for i in up.responses_items(body) if i.get("type", "message") == "message"
                and i["role"] not in ("system", "developer")]
    if backend in ("openai", "compat"):
        return [m["role"] for m in body["messages"] if m["role"] not in ("system", "developer")]
    if backend == "anthropic":
        return [m["role"] for m in body["messages"]]
    return [c.get("role", "user") for c in body["contents"]]


def run_pair(d: Driver, verbose: bool, only: str | None) -> None:
    w, b, s = d.world, d.backend, d.sdk

    def case(name: str, fn: Callable[[], None]) -> None:
        if only and only not in f"{s}/{b}/{name}":
            return
        check(s, b, name, fn, verbose)

    hi = [("user", "Hi")]
    for stream in (False, True):
        tag = "stream" if stream else "plain"

        def plain(stream: bool = stream) -> None:
            w.scenario("text")
            answered(d, "text", lambda: d.ask(hi, stream=stream), up.TEXT)
        case(f"text-{tag}", plain)

        def system(stream: bool = stream) -> None:
            w.scenario("text")
            answered(d, "text", lambda: d.ask(hi, stream=stream, system="Be brief. Ünïcode."), up.TEXT)
            expect(system_seen(b, upstream_body(w)) == "Be brief. Ünïcode.", "system prompt not delivered")
        case(f"system-{tag}", system)

        def multi(stream: bool = stream) -> None:
            w.scenario("text")
            turns = [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Tell me more")]
            answered(d, "text", lambda: d.ask(turns, stream=stream), up.TEXT)
            want = ["user", "model", "user"] if b == "gemini" else ["user", "assistant", "user"]
            expect(roles_seen(b, upstream_body(w)) == want, f"roles {roles_seen(b, upstream_body(w))}")
        case(f"multi-turn-{tag}", multi)

        def image(stream: bool = stream) -> None:
            w.scenario("image")
            answered(d, "image", lambda: d.ask([("image", "What is this?")], stream=stream),
                     f"images: image/png {len(PNG)} bytes")
        case(f"image-{tag}", image)

        def tool(stream: bool = stream, parallel: bool = False) -> None:
            w.scenario("tool", parallel=parallel)
            first = answered(d, "tool", lambda: d.ask(hi, stream=stream, tools=True), None, "tool_calls")
            cities = up.CITIES[:2 if parallel else 1]
            expect([(c[1], c[2]) for c in first.calls] == [("get_weather", {**up.TOOL_ARGS, "city": c})
                                                          for c in cities], f"calls {first.calls}")
            expect(all(c[0] for c in first.calls) or s.startswith("genai"), "a tool call without an id")
            results = [(c[0], f"{city}: 4C") for c, city in zip(first.calls, cities, strict=True)]
            turns = [("user", "Hi"), ("call", first.calls), ("result", results)]
            second = answered(d, "tool", lambda: d.ask(turns, stream=stream, tools=True), None)
            want = "The weather: " + " | ".join(f"{city}: 4C" for city in cities)
            expect(second.text == want, f"tool results not seen in order: {second.text!r} != {want!r}")
        case(f"tool-round-trip-{tag}", tool)
        case(f"parallel-tools-{tag}", lambda stream=stream: tool(stream, parallel=True))

        def json_object(stream: bool = stream) -> None:
            w.scenario("json")
            a = answered(d, "json", lambda: d.ask(hi, stream=stream, json_mode="object"), up.JSON_TEXT)
            expect(json.loads(a.text)["answer"] == 42, "not JSON")
        case(f"json-mode-{tag}", json_object)

        def json_schema(stream: bool = stream) -> None:
            w.scenario("json")
            answered(d, "json", lambda: d.ask(hi, stream=stream, json_mode="schema"), up.JSON_TEXT)
            body = upstream_body(w)
            if b in ("openai", "compat"):
                expect(body["response_format"]["json_schema"]["schema"]["required"] == ["answer", "city"], "schema")
            elif b == "responses":
                fmt = body["text"]["format"]
                expect(fmt["type"] == "json_schema" and fmt["schema"]["required"] == ["answer", "city"], "schema")
            elif b == "anthropic":
                expect(body["output_config"]["format"]["schema"]["required"] == ["answer", "city"], "schema")
            else:
                cfg = body["generationConfig"]
                expect(cfg["responseMimeType"] == "application/json", "mime")
                expect((cfg.get("responseJsonSchema") or cfg.get("responseSchema"))["required"] == ["answer", "city"],
                       "schema")
        case(f"structured-output-{tag}", json_schema)

        def length(stream: bool = stream) -> None:
            w.scenario("length")
            want_cap = 16 if b == "responses" else 5  # the Responses API's minimum max_output_tokens is 16
            answered(d, "length", lambda: d.ask(hi, stream=stream, max_tokens=want_cap), up.TEXT[:9], "length")
            body = upstream_body(w)
            cap = (body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
                   or (body.get("generationConfig") or {}).get("maxOutputTokens"))
            expect(cap == want_cap, f"cap sent upstream {cap}")
        case(f"max-tokens-{tag}", length)

        if b in ("anthropic", "gemini"):
            def think(stream: bool = stream) -> None:
                w.scenario("thinking")
                a = answered(d, "thinking", lambda: d.ask(hi, stream=stream, thinking=True), up.TEXT)
                if s != "openai":
                    expect(a.thinking == up.THINKING, f"thinking {a.thinking!r}")
                if s == "anthropic" and b == "anthropic":
                    m = a.raw[0]
                    expect(m.content[0].signature == up.SIGNATURE, "signature lost")
            case(f"thinking-{tag}", think)

        for status in ERRORS[b]:
            def err(status: int = status, stream: bool = stream) -> None:
                w.scenario("error", status=status)
                before = len(w.log_rows(b))
                cls, want = d.error_class(status)
                try:
                    d.ask(hi, stream=stream)
                except cls as exc:
                    got = getattr(exc, "status_code", None) or getattr(exc, "code", None)
                    expect(got == want, f"status {got} != {want}")
                    if status == 429:  # the upstream's delay: a header (OpenAI 2, Anthropic 3), RetryInfo 17.5s
                        delay = {"openai": "2", "anthropic": "3", "gemini": "18", "compat": "2", "responses": "2"}[b]
                        got_delay = exc.response.headers.get("retry-after")
                        expect(got_delay == delay, f"retry-after {got_delay!r} != {delay!r}")
                    return
                except Exception as exc:  # noqa: BLE001
                    raise AssertionError(f"{type(exc).__name__} ({exc}) instead of {cls.__name__}") from None
                finally:
                    row = last_row(w, b, before)
                    # the log keeps the upstream's own status (529 stays 529 though OpenAI clients see 503)
                    expect(row["status"] in (want, status) and (row["input_tokens"], row["output_tokens"]) == (0, 0),
                           f"log row {row['status'], row['input_tokens'], row['output_tokens']}")
                raise AssertionError("no exception")
            case(f"error-{status}-{tag}", err)

    if b in ("openai", "responses"):
        for stream in (False, True):
            def refusal(stream: bool = stream) -> None:
                w.scenario("refusal")
                a = answered(d, "refusal", lambda: d.ask(hi, stream=stream), None, d.refusal_finish())
                expect(d.refusal_text(a) == up.REFUSAL, f"refusal not seen: {a.text!r}")
            case(f"refusal-{'stream' if stream else 'plain'}", refusal)

    if b != "compat":
        def bad_key() -> None:
            w.scenario("text")
            d_bad = Driver(s, "badkey-" + b, w)
            d_bad.model = d.model
            cls = {"openai": openai.InternalServerError, "anthropic": anthropic.InternalServerError}.get(
                s, genai_errors.ServerError)
            try:
                d_bad.ask(hi)
            except cls as exc:
                got = getattr(exc, "status_code", None) or getattr(exc, "code", None)
                expect(got == 502, f"status {got}")
                return
            raise AssertionError("no error")
        case("provider-refuses-key", bad_key)

    if b in ("anthropic", "gemini", "responses"):
        def midstream() -> None:
            w.scenario("error", status=529, midstream=True)
            before = len(w.log_rows(b))
            try:
                d.ask(hi, stream=True)
            except Exception as exc:  # noqa: BLE001
                names = {"openai": "APIError", "anthropic": "APIStatusError", "genai": "APIError"}
                expect(any(c.__name__ in (names[s.split("-")[0]], "OverloadedError", "ServerError")
                           for c in type(exc).__mro__), f"{type(exc).__name__}: {exc}")
                row = last_row(w, b, before)
                expect(row["status"] >= 500, f"log row status {row['status']}")
                return
            raise AssertionError("a stream that failed mid-way raised nothing")
        case("midstream-error", midstream)

    if s == "openai":
        responses_checks(d, case)
    embedding_checks(d, case)

    def models() -> None:
        if s == "openai" or s == "anthropic":
            ids = [m.id for m in d.client.models.list()]
        else:
            ids = [m.name.removeprefix("models/") for m in d.client.models.list()]
        want = {"openai": ["gpt-4o", "gpt-4o-mini", "o3-mini"], "responses": ["gpt-4o", "gpt-4o-mini", "o3-mini"],
                "compat": ["llama3.2"],
                "anthropic": ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"],
                "gemini": ["gemini-2.5-flash", "gemini-2.0-flash", "gemini-3-pro-preview"]}[b]
        expect(ids == want, f"models {ids} != {want}")
    case("models-list", models)

    if s != "openai":
        def count() -> None:
            before = len(w.log_rows(b))
            if s == "anthropic":
                n = d.client.messages.count_tokens(model=d.model, messages=[{"role": "user", "content": "Hi there"}],
                                                   system="Be brief.").input_tokens
            else:
                n = d.client.models.count_tokens(model=d.model, contents="Hi there").total_tokens
            expect(isinstance(n, int) and n > 0, f"count {n}")
            time.sleep(0.2)
            expect(len(w.log_rows(b)) == before, "count_tokens was logged")
        case("count-tokens", count)


def responses_checks(d: Driver, case: Callable[[str, Callable[[], None]], None]) -> None:
    """POST /v1/responses with the openai SDK (create, stream + get_final_response, a function-tool
    round trip with the earlier output items resent), whatever the backend."""
    w, b = d.world, d.backend
    hi = [{"role": "user", "content": "Hi"}]
    for stream in (False, True):
        tag = "stream" if stream else "plain"

        def text(stream: bool = stream) -> None:
            w.scenario("text")
            answered(d, "text", lambda: d.respond(hi, stream=stream, instructions="Be brief. Ünïcode."), up.TEXT,
                     api="responses")
            expect(system_seen(b, upstream_body(w)) == "Be brief. Ünïcode.", "instructions not delivered")
        case(f"responses-text-{tag}", text)

        def tool(stream: bool = stream) -> None:
            parallel = stream  # one call plain, two parallel calls streamed
            w.scenario("tool", parallel=parallel)
            first = answered(d, "tool", lambda: d.respond(hi, stream=stream, tools=True), None, "tool_calls",
                             api="responses")
            cities = up.CITIES[:2 if parallel else 1]
            expect([(c[1], c[2]) for c in first.calls] == [("get_weather", {**up.TOOL_ARGS, "city": c})
                                                          for c in cities], f"calls {first.calls}")
            expect(all(c[0] for c in first.calls) and len({c[0] for c in first.calls}) == len(cities),
                   f"call ids {[c[0] for c in first.calls]}")
            results = [{"type": "function_call_output", "call_id": c[0], "output": f"{city}: 4C"}
                       for c, city in zip(first.calls, cities, strict=True)]
            items = [*hi, *first.raw[0].output, *results]  # the earlier output resent, as OpenAI's guide does
            want = "The weather: " + " | ".join(f"{city}: 4C" for city in cities)
            answered(d, "tool", lambda: d.respond(items, stream=stream, tools=True), want, api="responses")
        case(f"responses-tool-round-trip-{tag}", tool)

        def length(stream: bool = stream) -> None:
            w.scenario("length")
            a = answered(d, "length", lambda: d.respond(hi, stream=stream, max_tokens=16), up.TEXT[:9], "length",
                         api="responses")
            r = a.raw[0]
            expect(r.incomplete_details is not None and r.incomplete_details.reason == "max_output_tokens",
                   f"incomplete_details {r.incomplete_details}")
            body = upstream_body(w)
            cap = (body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
                   or (body.get("generationConfig") or {}).get("maxOutputTokens"))
            expect(cap == 16, f"cap sent upstream {cap}")
        case(f"responses-max-output-tokens-{tag}", length)

    if b in ("openai", "responses"):  # the backends that can refuse in OpenAI's way
        for stream in (False, True):
            def refusal(stream: bool = stream) -> None:
                w.scenario("refusal")
                a = answered(d, "refusal", lambda: d.respond(hi, stream=stream), "", api="responses")
                parts = [(p.type, getattr(p, "refusal", None)) for o in a.raw[0].output if o.type == "message"
                         for p in o.content]
                expect(parts == [("refusal", up.REFUSAL)], f"content parts {parts}")
            case(f"responses-refusal-{'stream' if stream else 'plain'}", refusal)

    def error() -> None:
        w.scenario("error", status=429)
        before = len(w.log_rows(b))
        try:
            d.respond(hi)
        except openai.RateLimitError as exc:
            expect(exc.status_code == 429, f"status {exc.status_code}")
            row = last_row(w, b, before)
            expect((row["status"], row["inbound"]) == (429, "responses"), f"log row {row['status'], row['inbound']}")
            return
        raise AssertionError("no RateLimitError")
    case("responses-error-429", error)


def embedding_checks(d: Driver, case: Callable[[str, Callable[[], None]], None]) -> None:
    """Embeddings: openai SDK ``embeddings.create`` (base64 by default, floats, dimensions, token
    arrays), google-genai ``models.embed_content`` and a raw Gemini ``:embedContent``; vectors are
    the upstream's, usage and log row (endpoint embeddings) what it reported. Anthropic: a 400."""
    w, b, s = d.world, d.backend, d.sdk.split("-")[0]
    model = EMBED_MODELS[b]
    if s == "anthropic":
        return

    def embedded(call: Callable[[], list[list[float]]], inputs: list, dims: int | None = None,
                 usage: Callable[[], int | None] = lambda: None) -> None:
        w.scenario("text")
        before = len(w.log_rows(b))
        vectors = call()
        want = [up.embed_vector(model, x, dims) for x in inputs]
        expect(vectors == want, f"vectors differ: {len(vectors)} of {[len(v) for v in vectors]} values, first "
                                f"{[v[:2] for v in vectors]} != {[v[:2] for v in want]}")
        body = upstream_body(w)
        path = next(r["path"] for r in w.received() if r["method"] == "POST")
        if b == "gemini":
            expect(path.endswith(f"/models/{model}:batchEmbedContents"), f"upstream path {path}")
            sent = [" ".join(p["text"] for p in r["content"]["parts"]) for r in body["requests"]]
            dims_sent = {r.get("outputDimensionality") for r in body["requests"]}
            expect(sent == inputs and dims_sent == {dims}, f"upstream got {sent} {dims_sent}")
        else:
            expect(path.endswith("/v1/embeddings"), f"upstream path {path}")
            expect(body["encoding_format"] == "float", f"encoding_format {body.get('encoding_format')!r} upstream")
            expect(body["input"] == inputs and body.get("dimensions") == dims, f"upstream got {body}")
        row = last_row(w, b, before)
        tokens = sum(up.embed_tokens(x) for x in inputs)
        logged = (row["status"], row["endpoint"], row["inbound"], row["output_tokens"], row["model"])
        want_row = (200, "embeddings", INBOUND[s], 0, model)
        expect(logged == want_row, f"log row {logged} != {want_row}")
        if b == "gemini":  # Gemini reports no usage: the gateway's estimate, marked as one
            expect(row["estimated"] == 1 and row["input_tokens"] > 0,
                   f"log row {row['input_tokens'], row['estimated']}")
        else:
            expect((row["input_tokens"], row["estimated"]) == (tokens, 0),
                   f"log row tokens {row['input_tokens'], row['estimated']} != {tokens, 0}")
        seen = usage()
        if seen is not None:
            expect(seen == row["input_tokens"], f"SDK usage {seen} != {row['input_tokens']}")

    def refused(call: Callable[[], Any], cls: type, what: str) -> None:
        w.scenario("text")
        before = len(w.log_rows(b))
        try:
            call()
        except cls as exc:
            got = getattr(exc, "status_code", None) or getattr(exc, "code", None)
            expect(got == 400 and what in str(exc), f"{got}: {exc}")
            row = last_row(w, b, before)
            expect((row["status"], row["endpoint"]) == (400, "embeddings"), f"log row {row['status'], row['endpoint']}")
            if b == "anthropic":
                expect(not w.received(), "an Anthropic backend was asked for embeddings")
            return
        raise AssertionError(f"no {cls.__name__}")

    if s == "openai":
        if b == "anthropic":
            case("embeddings-refused", lambda: refused(lambda: d.client.embeddings.create(model=model, input="Hi"),
                                                       openai.BadRequestError, "has no embeddings API"))
            return

        def default() -> None:  # the SDK asks for base64 and decodes it
            holder: dict[str, int] = {}

            def call() -> list[list[float]]:
                r = d.client.embeddings.create(model=model, input=EMBED_TEXTS)
                holder["usage"] = r.usage.prompt_tokens
                return [e.embedding for e in r.data]
            embedded(call, EMBED_TEXTS, usage=lambda: holder["usage"])
        case("embeddings-base64", default)

        def floats() -> None:
            holder: dict[str, int] = {}

            def call() -> list[list[float]]:
                r = d.client.embeddings.create(model=model, input=EMBED_TEXTS[0], encoding_format="float",
                                               dimensions=256)
                holder["usage"] = r.usage.prompt_tokens
                expect(all(isinstance(v, float) for v in r.data[0].embedding), "not floats")
                return [e.embedding for e in r.data]
            embedded(call, EMBED_TEXTS[:1], 256, usage=lambda: holder["usage"])
        case("embeddings-float-dimensions", floats)

        def tokens() -> None:
            def call() -> list[list[float]]:
                return [e.embedding for e in d.client.embeddings.create(model=model, input=TOKEN_INPUTS).data]
            if b in ("openai", "responses"):
                embedded(call, TOKEN_INPUTS)
            else:  # Gemini and the Ollama-like server embed text only
                refused(call, openai.BadRequestError, "")
        case("embeddings-token-arrays", tokens)
        return

    # google-genai
    def genai_embed(dims: int | None = None) -> Callable[[], list[list[float]]]:
        def call() -> list[list[float]]:
            cfg = types.EmbedContentConfig(output_dimensionality=dims) if dims else None
            r = d.client.models.embed_content(model=model, contents=EMBED_TEXTS[:2], config=cfg)
            return [e.values for e in r.embeddings or ()]
        return call

    if b == "anthropic":
        case("embed-content-refused", lambda: refused(genai_embed(), genai_errors.ClientError,
                                                      "has no embeddings API"))
        return
    case("embed-content", lambda: embedded(genai_embed(), EMBED_TEXTS[:2]))
    case("embed-content-dimensions", lambda: embedded(genai_embed(256), EMBED_TEXTS[:2], 256))
    if d.sdk == "genai-v1beta":  # the SDK always batches: the single-content method, as a REST user calls it
        def single() -> list[list[float]]:
            r = w.http.post(f"{w.gateway.url}/v1beta/models/{model}:embedContent",
                           headers={"x-goog-api-key": w.keys[b]},
                           json={"content": {"parts": [{"text": EMBED_TEXTS[1]}]}, "taskType": "SEMANTIC_SIMILARITY"})
            expect(r.status_code == 200 and set(r.json()) == {"embedding"}, f"{r.status_code} {r.text[:200]}")
            return [r.json()["embedding"]["values"]]
        case("embed-content-single", lambda: embedded(single, EMBED_TEXTS[1:2]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", dest="only", help="only cases whose sdk/backend/case contains this")
    parser.add_argument("-v", dest="verbose", action="store_true")
    args = parser.parse_args()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aigw-acceptance-") as tmp:
        world = World(Path(tmp))
        try:
            for sdk in SDKS:
                for backend in BACKENDS:
                    if sdk in BACKEND_SDKS.get(backend, SDKS):
                        run_pair(Driver(sdk, backend, world), args.verbose, args.only)
        finally:
            world.stop()
            if args.verbose:
                print("".join(world.gateway.lines[-40:]))
    failed = [r for r in RESULTS if r[3].startswith("FAIL")]
    known = [r for r in RESULTS if r[3].startswith("KNOWN")]
    for sdk, backend, case, outcome in RESULTS:
        if outcome != "ok" or args.verbose:
            print(f"{sdk:<13} {backend:<10} {case:<28} {outcome}")
    passed = len(RESULTS) - len(failed) - len(known)
    print(f"\n{passed}/{len(RESULTS)} passed" + (f", {len(known)} known gateway bugs" if known else "")
          + f" in {time.monotonic() - t0:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
