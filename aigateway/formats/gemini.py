"""Gemini generateContent: the codec contract (``formats/contract.py``) for Google's Developer API,
both as an upstream and as the format google-genai clients speak to the gateway.

References: https://ai.google.dev/api/generate-content (request, response, streaming),
https://ai.google.dev/api/caching#Schema (the OpenAPI schema subset),
https://ai.google.dev/gemini-api/docs/troubleshooting (errors), https://ai.google.dev/api/models and
https://ai.google.dev/api/tokens."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson

from aigateway import neutral
from aigateway.formats.contract import CHAT, COUNT_TOKENS, EMBED, MODELS, Endpoint
from aigateway.formats.framing import FrameDecoder, JSONArrayEncoder, SSEDecoder, SSEFrame, sse

NAME = "gemini"
ID_PREFIX = ""  # Gemini responseIds are bare tokens
MODELS_PATH = "/v1beta/models?pageSize=1000"  # the default page is 50; a page may still hold fewer
# The model and the method are in the path (``%3A`` is an escaped colon), under /v1beta/ and /v1/.
_METHOD = r"/(v1beta|v1)/models/([^/:]+?)(?::|%3A)"
ENDPOINTS = (
    Endpoint(_METHOD + r"(generateContent|streamGenerateContent)", CHAT),
    Endpoint(_METHOD + r"(countTokens)", COUNT_TOKENS),
    Endpoint(_METHOD + r"(embedContent|batchEmbedContents)", EMBED),
    Endpoint(r"/v1beta/models", MODELS),
    Endpoint(r"/v1beta/models/(.+)", MODELS),
    Endpoint(r"/v1/models", MODELS, shared=True),
    Endpoint(r"/v1/models/(.+)", MODELS, shared=True),
)
CLIENT_KEYS = ("x-goog-api-key", "?key")
LISTING_HINTS = ("x-goog-api-key", "?key")
UPSTREAM_AUTH = "x-goog-api-key"
UPSTREAM_HEADERS = ()
MAX_EMBED_BATCH = 100  # Gemini's limit of requests in one batchEmbedContents
CONTINUE_TEXT = "(continue)"  # the minimal user turn before a leading model turn
# Between a functionResponse turn and a following user text: folding the text into the response
# content makes Gemini 3 answer empty, and two user contents in a row break strict alternation
# (google-gemini/gemini-cli#28700 inserts a placeholder model turn the same way).
BRIDGE_TEXT = "(tool results received)"
# Google's documented stand-in for a functionCall replayed without its thoughtSignature (history not
# made by Gemini 3, or by a client that dropped it): Gemini 3 rejects such a call otherwise.
SKIP_SIGNATURE = "skip_thought_signature_validator"
# reasoning_effort -> thinkingBudget: the mapping Google's own OpenAI-compatible endpoint documents.
EFFORT_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576,
                  "max": 24576}
_KNOWN = frozenset({"contents", "systemInstruction", "system_instruction", "generationConfig",
                    "generation_config", "tools", "toolConfig", "tool_config", "model"})
_FILTERED = frozenset({"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE",
                       "IMAGE_PROHIBITED_CONTENT", "RECITATION", "IMAGE_RECITATION"})  # FinishReason values
_FINISH_OUT = {neutral.FinishReason.STOP: "STOP", neutral.FinishReason.TOOL_CALLS: "STOP",
               neutral.FinishReason.LENGTH: "MAX_TOKENS",
               neutral.FinishReason.CONTENT_FILTER: "SAFETY"}
_MODE_IN = {"AUTO": "auto", "VALIDATED": "auto", "NONE": "none", "ANY": "required"}
_MODE_OUT = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
           403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ABORTED", 413: "INVALID_ARGUMENT",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}  # google.rpc canonical codes
_KIND_STATUS = {neutral.ErrorKind.RATE_LIMIT: "RESOURCE_EXHAUSTED", neutral.ErrorKind.QUOTA: "RESOURCE_EXHAUSTED",
                neutral.ErrorKind.TIMEOUT: "DEADLINE_EXCEEDED", neutral.ErrorKind.NOT_FOUND: "NOT_FOUND"}
_URLSAFE = str.maketrans("-_", "+/")
_MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
         "webp": "image/webp", "heic": "image/heic", "heif": "image/heif", "pdf": "application/pdf"}
# JSON Schema keywords Gemini's OpenAPI-subset Schema also takes; everything else is dropped.
_SCHEMA_KEYS = frozenset({"description", "enum", "title", "minItems", "maxItems", "minimum", "maximum",
                          "minLength", "maxLength", "pattern", "minProperties", "maxProperties", "default",
                          "example"})
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})
# neutral Params field, Gemini generationConfig name, integer?
_PARAMS = (("max_tokens", "maxOutputTokens", True), ("n", "candidateCount", True), ("seed", "seed", True),
           ("top_k", "topK", True), ("temperature", "temperature", False), ("top_p", "topP", False),
           ("presence_penalty", "presencePenalty", False), ("frequency_penalty", "frequencyPenalty", False))


def _g(obj: Any, name: str) -> Any:
    """A field by its camelCase name or its snake_case spelling: the API takes both, and google-genai
    itself sends a mix (``inlineData`` holding ``mime_type``, ``parameters_json_schema``)."""
    if not isinstance(obj, dict):
        return None
    value = obj.get(name)
    return obj.get(re.sub(r"([A-Z])", r"_\1", name).lower()) if value is None else value


def _bare(model: str | None) -> str:
    return (model or "").removeprefix("models/")


def _standard_base64(data: str) -> str:
    """Protobuf JSON bytes may come URL-safe and unpadded (both are valid proto3 JSON; google-genai
    sends URL-safe); OpenAI data URLs and Anthropic base64 sources take only standard padded base64."""
    data = data.translate(_URLSAFE)
    return data if "=" in data else data + "=" * (-len(data) % 4)


def _path(model: str, stream: bool) -> str:
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"/v1beta/models/{_bare(model)}:{action}"


def _call_id(*key: Any) -> str:
    """A deterministic tool-call id: Gemini calls often have none, and a later functionResponse (name
    and optional id only) must link to the same id in every request of the conversation."""
    return "call_" + hashlib.sha256(":".join(map(str, key)).encode()).hexdigest()[:24]


# ---------------------------------------------------------------- requests in (google-genai -> gateway)


def _system(raw: Any) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    parts = _g(raw, "parts") if isinstance(raw, dict) else raw
    if not isinstance(parts, list):
        raise neutral.invalid("systemInstruction: expected a Content with parts", "systemInstruction")
    return [str(_g(p, "text")) for p in parts if _g(p, "text") is not None]


def _result(response: Any) -> tuple[str, bool]:
    """A functionResponse payload as tool-result text; the ``{"result": ..}`` / ``{"error": ..}``
    wrappers (google-genai's automatic function calling, and our own encoding) are unwrapped."""
    if isinstance(response, dict) and len(response) == 1 and ("result" in response or "error" in response):
        (key, value), = response.items()
        return (value if isinstance(value, str) else orjson.dumps(value).decode()), key == "error"
    return ("" if response is None else orjson.dumps(response).decode()), False


def _messages(contents: Any) -> list[neutral.Message]:
    if not isinstance(contents, list) or not contents:
        raise neutral.invalid("contents: a non-empty list of contents is required", "contents")
    messages: list[neutral.Message] = []
    pending: list[neutral.ToolCallPart] = []  # calls not yet answered, oldest first
    for ci, content in enumerate(contents):
        where = f"contents[{ci}]"
        role = _g(content, "role") or "user"
        raw_parts = _g(content, "parts")
        if not isinstance(content, dict) or not isinstance(raw_parts, list):
            raise neutral.invalid(f"{where}: expected a Content with a list of parts", where)
        if role not in ("user", "model", "function", "tool"):
            raise neutral.invalid(f"{where}.role: must be user or model, not {role!r}", where)
        parts: list = []
        for pi, part in enumerate(raw_parts):
            if not isinstance(part, dict):
                raise neutral.invalid(f"{where}.parts[{pi}]: expected an object", where)
            text, blob, file = _g(part, "text"), _g(part, "inlineData"), _g(part, "fileData")
            sig = _g(part, "thoughtSignature")
            call, resp = _g(part, "functionCall"), _g(part, "functionResponse")
            if text is not None:
                # Gemini's signatures only mean something to Gemini and only matter on calls: not kept here
                thought = role == "model" and _g(part, "thought")
                parts.append(neutral.ReasoningPart(str(text)) if thought else neutral.TextPart(str(text)))
            elif blob is not None:
                if not isinstance(_g(blob, "data"), str):
                    raise neutral.invalid(f"{where}.parts[{pi}].inlineData: data must be a base64 string", where)
                parts.append(neutral.ImagePart(media_type=_g(blob, "mimeType"),
                                               data=_standard_base64(_g(blob, "data"))))
            elif file is not None:
                if not isinstance(_g(file, "fileUri"), str):
                    raise neutral.invalid(f"{where}.parts[{pi}].fileData: fileUri is required", where)
                parts.append(neutral.ImagePart(media_type=_g(file, "mimeType"), url=_g(file, "fileUri")))
            elif call is not None or resp is not None:
                item = call if call is not None else resp
                name, extra = _g(item, "name"), _g(item, "args" if call is not None else "response")
                if not isinstance(name, str) or not isinstance(extra or {}, dict):
                    raise neutral.invalid(f"{where}.parts[{pi}]: a function part needs a name and an object", where)
                given = _g(item, "id")
                if call is not None:
                    data = {"thought_signature": sig} if sig else {}
                    args = orjson.dumps(extra or {}).decode()
                    tc = neutral.ToolCallPart(str(given or _call_id(ci, pi, name)), name, args, data)
                    pending.append(tc)
                    parts.append(tc)
                else:  # link to the call with this id, else the earliest unanswered call of this name
                    match = next((c for c in pending if given and c.id == given), None) or next(
                        (c for c in pending if c.name == name), None)
                    if match is not None:
                        pending.remove(match)
                    text_out, is_error = _result(extra)
                    call_id = match.id if match else str(given or _call_id(ci, pi, name))
                    parts.append(neutral.ToolResultPart(call_id, text_out, name, is_error))
            # executableCode, codeExecutionResult, videoMetadata...: no neutral equivalent, skipped
        if parts:
            messages.append(neutral.Message("assistant" if role == "model" else "user", parts))
    return messages


def _from_openapi(schema: Any) -> Any:
    """Gemini's OpenAPI-subset Schema (uppercase types, ``nullable``) as plain JSON Schema."""
    if isinstance(schema, list):
        return [_from_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {name: _from_openapi(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = _from_openapi(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _params(config: Any) -> tuple[neutral.Params, neutral.ResponseFormat | None]:
    if not isinstance(config, dict):
        raise neutral.invalid("generationConfig: expected an object", "generationConfig")
    p = neutral.Params(**{attr: _g(config, name) for attr, name, _ in _PARAMS})
    top_k = p.top_k  # google-genai types it as a float
    p.top_k = int(top_k) if isinstance(top_k, float) and top_k.is_integer() else top_k
    stop = _g(config, "stopSequences")
    p.stop = [stop] if isinstance(stop, str) else stop
    thinking = _g(config, "thinkingConfig") or {}
    budget, level = _g(thinking, "thinkingBudget"), _g(thinking, "thinkingLevel")
    p.reasoning_budget = None if budget == -1 else budget  # -1: dynamic, the model's own choice
    p.reasoning_effort = level.lower() if isinstance(level, str) else None
    json_schema, schema = _g(config, "responseJsonSchema"), _g(config, "responseSchema")
    if isinstance(json_schema, dict):
        return p, neutral.ResponseFormat("json_schema", json_schema)
    if isinstance(schema, dict):
        return p, neutral.ResponseFormat("json_schema", _from_openapi(schema))
    return p, neutral.ResponseFormat("json_object") if _g(config, "responseMimeType") == "application/json" else None


def _tools(raw: Any) -> list[neutral.Tool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise neutral.invalid("tools: expected a list", "tools")
    tools = []
    for decl in (d for t in raw for d in (_g(t, "functionDeclarations") or ())):
        if not isinstance(_g(decl, "name"), str):
            raise neutral.invalid("tools: each functionDeclaration needs a name", "tools")
        params = _g(decl, "parametersJsonSchema")
        if params is None and _g(decl, "parameters") is not None:
            params = _from_openapi(_g(decl, "parameters"))
        tools.append(neutral.Tool(decl["name"], _g(decl, "description"), params))
    return tools  # built-in tools (googleSearch, codeExecution...) have no neutral equivalent


def _tool_choice(raw: Any) -> neutral.ToolChoice | None:
    config = _g(raw, "functionCallingConfig")
    if config is None:
        return None
    if not isinstance(config, dict):
        raise neutral.invalid("toolConfig.functionCallingConfig: expected an object", "toolConfig")
    mode, names = str(_g(config, "mode") or "AUTO").upper(), _g(config, "allowedFunctionNames")
    if mode == "ANY" and isinstance(names, list) and len(names) == 1 and isinstance(names[0], str):
        return neutral.ToolChoice("tool", names[0])
    return neutral.ToolChoice(_MODE_IN.get(mode, "auto"))


def _check(params: neutral.Params) -> None:
    for attr, name, integer in (*_PARAMS, ("reasoning_budget", "thinkingBudget", True)):
        value = getattr(params, attr)
        kinds = int if integer else (int, float)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            kind = "an integer" if integer else "a number"
            raise neutral.invalid(f"generationConfig.{name}: expected {kind}", name)
    if params.max_tokens is not None and params.max_tokens < 1:
        raise neutral.invalid("generationConfig.maxOutputTokens: must be at least 1", "maxOutputTokens")
    stop = params.stop
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise neutral.invalid("generationConfig.stopSequences: expected a list of strings", "stopSequences")


def decode_request(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """A google-genai / REST body (camelCase or snake_case) to the neutral request; the model and the
    streaming choice come from the URL. Anything malformed is a 400 INVALID_ARGUMENT."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    try:
        params, response_format = _params(_g(body, "generationConfig") or {})
        stream = bool(route.stream)
        req = neutral.ChatRequest(
            model=_bare(route.model) or None, messages=_messages(_g(body, "contents")),
            system=_system(_g(body, "systemInstruction")), params=params, tools=_tools(_g(body, "tools")),
            tool_choice=_tool_choice(_g(body, "toolConfig")), response_format=response_format,
            stream=stream, include_usage=stream,  # Gemini streams always carry usageMetadata
            extra={k: v for k, v in body.items() if k not in _KNOWN})
    except neutral.GatewayError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError) as exc:
        raise neutral.invalid(f"malformed request: {type(exc).__name__}: {exc}") from None
    _check(req.params)
    return req


# ---------------------------------------------------------------- requests out (gateway -> Gemini)


def _call_part(name: str, arguments: str, provider_data: dict) -> dict:
    part: dict[str, Any] = {"functionCall": {"name": name, "args": neutral.json_object(arguments)}}
    if provider_data.get("thought_signature"):
        part["thoughtSignature"] = provider_data["thought_signature"]  # beside functionCall
    return part


def _user_part(p: neutral.TextPart | neutral.ImagePart) -> dict:
    if isinstance(p, neutral.TextPart):
        return {"text": p.text}
    url = p.url or ""
    if url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"inlineData": {"mimeType": mime or "image/png", "data": data}}
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type or "image/png", "data": p.data}}
    mime = p.media_type or _MIME.get(url.split("?")[0].rsplit(".", 1)[-1].lower(), "image/jpeg")
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _response_part(p: neutral.ToolResultPart, names: dict[str, str]) -> dict:
    """functionResponse needs the function name (OpenAI tool messages only carry the id) and an
    object ``response``."""
    response: Any = None
    if not p.is_error:
        try:
            response = orjson.loads(p.content)
        except orjson.JSONDecodeError:
            pass
    if not isinstance(response, dict):
        response = {"error" if p.is_error else "result": p.content}
    name = p.name or names.get(p.tool_call_id) or "unknown"
    return {"functionResponse": {"name": name, "response": response}}


def _append(contents: list[dict], role: str, parts: list[dict]) -> None:
    """Add a content, merging same-role neighbours (Gemini wants alternation), except that
    user text never joins a functionResponse content: a bridge model turn separates them."""
    if not parts:
        return
    if contents and contents[-1]["role"] == role:
        last = contents[-1]["parts"]
        if not (role == "user" and "functionResponse" in last[-1] and "functionResponse" not in parts[0]):
            last.extend(parts)
            return
        contents.append({"role": "model", "parts": [{"text": BRIDGE_TEXT}]})
    contents.append({"role": role, "parts": parts})


def _contents(messages: list[neutral.Message], sign: bool) -> list[dict]:
    contents: list[dict] = []
    names: dict[str, str] = {}
    for msg in map(neutral.as_user, messages):
        if msg.role == "assistant":  # reasoning is not replayed to Gemini; only call signatures are
            names.update((p.id, p.name) for p in msg.parts if isinstance(p, neutral.ToolCallPart))
            kept = [p for p in msg.parts
                    if isinstance(p, neutral.ToolCallPart) or isinstance(p, neutral.TextPart) and p.text]
            _append(contents, "model", [_call_part(p.name, p.arguments, p.provider_data)
                                        if isinstance(p, neutral.ToolCallPart) else {"text": p.text} for p in kept])
            continue
        results = [_response_part(p, names) for p in msg.parts if isinstance(p, neutral.ToolResultPart)]
        _append(contents, "user", results)
        _append(contents, "user", [_user_part(p) for p in msg.parts
                                   if (isinstance(p, neutral.TextPart) and p.text) or isinstance(p, neutral.ImagePart)])
    if not contents or contents[0]["role"] != "user":
        contents.insert(0, {"role": "user", "parts": [{"text": CONTINUE_TEXT}]})
    for content in contents if sign else ():
        calls = [p for p in content["parts"] if "functionCall" in p]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return contents


def _to_openapi(schema: Any, defs: dict, depth: int = 0) -> dict:
    """JSON Schema to Gemini's OpenAPI subset: ``$ref`` inlined from ``$defs``, null
    unions as ``nullable``, uppercase types; keywords Gemini rejects ($schema, additionalProperties,
    unknown formats...) dropped."""
    if not isinstance(schema, dict) or depth > 24:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _to_openapi({**target, **rest}, defs, depth + 1) if isinstance(target, dict) else {}
    out: dict[str, Any] = {}
    types, nullable = schema.get("type"), False
    if isinstance(types, list):
        nullable, types = "null" in types, [t for t in types if t != "null"]
        if len(types) > 1:
            out["anyOf"] = [{"type": str(t).upper()} for t in types]
        types = types[0] if len(types) == 1 else None
    all_of = schema.get("allOf")
    for sub in all_of if isinstance(all_of, list) else ():  # an intersection: merged
        out.update(_to_openapi(sub, defs, depth + 1))
    union = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(union, list):
        members = [s for s in union if not (isinstance(s, dict) and s.get("type") == "null")]
        nullable = nullable or len(members) < len(union)
        if len(members) == 1:
            out.update(_to_openapi(members[0], defs, depth + 1))
        elif members:
            out["anyOf"] = [_to_openapi(s, defs, depth + 1) for s in members]
    if isinstance(types, str):
        out["type"] = types.upper()
    if "const" in schema:
        out["enum"] = [schema["const"]]
        out.setdefault("type", "STRING")
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict) and value:
            out["properties"] = {name: _to_openapi(sub, defs, depth + 1) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out["items"] = _to_openapi(value, defs, depth + 1)
        elif key in _SCHEMA_KEYS or (key == "format" and value in _FORMATS):
            out[key] = value
    if isinstance(out.get("enum"), list) and None in out["enum"]:
        out["enum"], nullable = [v for v in out["enum"] if v is not None], True
    required = [r for r in schema.get("required") or () if r in out.get("properties", {})]
    if required:
        out["required"] = required
    if nullable:
        out["nullable"] = True
    return out


def _declaration(tool: neutral.Tool) -> dict:
    """A functionDeclaration with a sanitized ``parameters`` Schema. ``parametersJsonSchema`` would take
    the JSON Schema as is, but only newer models accept it; the OpenAPI subset works on all of them.
    A schema without properties is left out: Gemini rejects an OBJECT with empty properties."""
    out: dict[str, Any] = {"name": tool.name}
    if tool.description:
        out["description"] = tool.description
    schema = tool.parameters if isinstance(tool.parameters, dict) else {}
    params = _to_openapi(schema, {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})})
    if params.get("properties"):
        out["parameters"] = params
    return out


def _config(req: neutral.ChatRequest) -> dict:
    p = req.params
    config = {name: getattr(p, attr) for attr, name, _ in _PARAMS if getattr(p, attr) is not None}
    if p.stop:
        config["stopSequences"] = p.stop
    fmt = req.response_format
    if fmt is not None and fmt.type in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        if fmt.type == "json_schema":  # responseJsonSchema takes plain JSON Schema
            config["responseJsonSchema"] = fmt.schema or {"type": "object"}
    budget = p.reasoning_budget
    budget = EFFORT_BUDGETS.get(p.reasoning_effort or "") if budget is None else budget
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget, **({"includeThoughts": True} if budget else {})}
    return config


def encode_request(req: neutral.ChatRequest, policy: neutral.Policy) -> tuple[str, dict]:
    """The neutral request as a generateContent body; the relay has applied the policy."""
    model = _bare(req.model or policy.model)
    sign = not re.match(r"(gemini-[12][.-]|gemma)", model)  # only Gemini 3+ validates call signatures
    body: dict[str, Any] = {"contents": _contents(req.messages, sign)}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": s} for s in req.system]}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
        if req.tool_choice is not None:
            calling: dict[str, Any] = {"mode": _MODE_OUT.get(req.tool_choice.mode, "AUTO")}
            if req.tool_choice.mode == "tool" and req.tool_choice.name:
                calling["allowedFunctionNames"] = [req.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    config = _config(req)
    if config:
        body["generationConfig"] = config
    return _path(model, req.stream), body


def patch_request(body: dict, policy: neutral.Policy, route: neutral.Route) -> tuple[str, dict]:
    """Same-format fast path: prepend the client's system prompt, clamp maxOutputTokens, keep the rest
    untouched (either spelling of each field is patched where the client put it)."""
    def key(obj: dict, camel: str) -> str:
        snake = re.sub(r"([A-Z])", r"_\1", camel).lower()
        return snake if snake in obj and camel not in obj else camel

    if policy.system:
        name, first = key(body, "systemInstruction"), {"text": policy.system}
        current = body.get(name)
        if isinstance(current, dict) and isinstance(current.get("parts"), list):
            current["parts"].insert(0, first)
        else:
            body[name] = {"parts": [first, {"text": current}] if isinstance(current, str) else [first]}
    if policy.max_tokens is not None:
        config = body.get(key(body, "generationConfig"))
        if not isinstance(config, dict):
            config = body[key(body, "generationConfig")] = {}
        name = key(config, "maxOutputTokens")
        asked = config.get(name)
        ok = isinstance(asked, int) and not isinstance(asked, bool) and asked > 0
        config[name] = min(asked, policy.max_tokens) if ok and isinstance(asked, int) else policy.max_tokens
    return _path(policy.model, bool(route.stream)), body


# ---------------------------------------------------------------- responses in (Gemini -> gateway)


def _usage(raw: Any) -> neutral.Usage | None:
    """usageMetadata normalised: thoughts count as output, tool-use prompt tokens as input."""
    if not isinstance(raw, dict):
        return None
    count = {k: int(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    thoughts = count.get("thoughtsTokenCount", 0)
    return neutral.Usage(input_tokens=count.get("promptTokenCount", 0) + count.get("toolUsePromptTokenCount", 0),
                         output_tokens=count.get("candidatesTokenCount", 0) + thoughts,
                         cached_tokens=count.get("cachedContentTokenCount", 0), reasoning_tokens=thoughts)


class _Lines(SSEDecoder):
    """SSE, plus the bare (possibly pretty-printed) JSON lines Gemini may send for an error after the
    stream opened; each such object becomes a frame of its own."""

    whole_events = False  # every line goes through _line, which spots the JSON ones

    def __init__(self) -> None:
        super().__init__()
        self._json: list[bytes] = []

    def _line(self, line: bytes, raw: bytes, frames: list[SSEFrame]) -> None:
        if not self._json and line.lstrip()[:1] != b"{":
            return super()._line(line, raw, frames)
        self._json.append(raw)
        text = b"".join(self._json)
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            if len(text) < 65536:
                return
        self._json = []
        frames.append(SSEFrame(None, text.decode("utf-8", "replace").strip(), text))

    def close(self) -> list[SSEFrame]:
        frames = super().close()
        if self._json:
            text, self._json = b"".join(self._json), []
            frames.append(SSEFrame(None, text.decode("utf-8", "replace").strip(), text))
        return frames


class StreamDecoder(FrameDecoder):
    """Upstream ``streamGenerateContent?alt=sse`` frames to neutral events. Each chunk holds
    only new parts; function calls arrive whole; usageMetadata is cumulative (the last one wins)."""

    def __init__(self) -> None:
        super().__init__(_Lines())
        self._started = self._finished = False
        self._calls = 0
        self._rid = ""

    def _decode(self, frame: SSEFrame) -> list[neutral.Event]:
        if not frame.data.strip():
            return []
        try:
            chunk = orjson.loads(frame.data)
            if not isinstance(chunk, dict):
                return []
            if chunk.get("error") is not None:
                code = _g(chunk["error"], "code")
                status = code if isinstance(code, int) and 400 <= code < 600 else 500
                return [neutral.StreamError(decode_error(status, frame.data.encode()))]
            return self.chunk(chunk)
        except (orjson.JSONDecodeError, TypeError, AttributeError, ValueError):
            return [neutral.stream_failure("upstream sent malformed stream data")]

    def chunk(self, chunk: dict) -> list[neutral.Event]:
        """The events of one GenerateContentResponse (a stream chunk or a whole response)."""
        events: list[neutral.Event] = []
        usage = _usage(chunk.get("usageMetadata"))
        if not self._started:  # the first chunk's usage already holds the prompt count: Start carries it,
            # so an Anthropic client's message_start reports input tokens as Anthropic's own does
            self._started, self._rid = True, str(chunk.get("responseId") or "")
            events.append(neutral.Start(self._rid, str(chunk.get("modelVersion") or ""), 0, usage))
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list):
            candidates = []
        cand = next((c for c in candidates if isinstance(c, dict) and c.get("index", 0) == 0), None)
        if isinstance(cand, dict):
            for part in (cand.get("content") or {}).get("parts") or ():
                events.extend(self._part(part) if isinstance(part, dict) else ())
            reason = cand.get("finishReason")
            if reason and not self._finished:
                self._finished = True
                finish = neutral.FinishReason.CONTENT_FILTER if reason in _FILTERED else neutral.FinishReason.STOP
                finish = neutral.FinishReason.LENGTH if reason == "MAX_TOKENS" else finish
                if reason == "STOP" and self._calls:
                    finish = neutral.FinishReason.TOOL_CALLS
                events.append(neutral.Finish(finish))
        elif (chunk.get("promptFeedback") or {}).get("blockReason") and not self._finished:
            self._finished = True  # the prompt itself was blocked: no candidates at all
            events.append(neutral.Finish(neutral.FinishReason.CONTENT_FILTER))
        if usage is not None:
            events.append(neutral.UsageReport(usage))
        return events

    def _part(self, part: dict) -> list[neutral.Event]:
        sig, call, text = part.get("thoughtSignature"), part.get("functionCall"), part.get("text")
        if isinstance(call, dict):
            index, self._calls = self._calls, self._calls + 1
            call_id = str(call.get("id") or _call_id(self._rid, index))
            args = orjson.dumps(call.get("args") or {}).decode()
            data = {"thought_signature": sig} if sig else {}
            name = str(call.get("name") or "")
            return [neutral.ToolCallStart(index, call_id, name, data), neutral.ToolCallDelta(index, args)]
        if isinstance(text, str) and part.get("thought"):  # a thought's signature is Gemini-only: dropped
            return [neutral.ReasoningDelta(text)] if text else []
        return [neutral.TextDelta(text)] if isinstance(text, str) and text else []


def decode_response(body: dict) -> neutral.ChatResponse:
    """An upstream GenerateContentResponse to the neutral response."""
    if isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        raise decode_error(code if isinstance(code, int) and 400 <= code < 600 else 502, orjson.dumps(body))
    try:
        events = StreamDecoder().chunk(body)
        start = events.pop(0)
        return neutral.fold(start, events)  # type: ignore[arg-type]  # chunk() always opens with Start
    except (TypeError, AttributeError, ValueError) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream response: {exc}") from None


# ---------------------------------------------------------------- responses out (gateway -> client)


def _encode_usage(u: neutral.Usage) -> dict:
    """Neutral usage the Gemini way: candidatesTokenCount excludes thoughts."""
    out = {"promptTokenCount": u.input_tokens, "totalTokenCount": u.total_tokens,
           "candidatesTokenCount": max(0, u.output_tokens - u.reasoning_tokens)}
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def _response(parts: list[dict], finish: neutral.FinishReason | None, usage: neutral.Usage | None, model: str, rid: str
              ) -> dict:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish is not None:
        candidate["finishReason"] = _FINISH_OUT[finish]
    out: dict[str, Any] = {"candidates": [{**candidate, "index": 0}]}
    if usage is not None:
        out["usageMetadata"] = _encode_usage(usage)
    return {**out, "modelVersion": model, "responseId": rid}


def encode_response(resp: neutral.ChatResponse, req: neutral.ChatRequest) -> dict:
    """The neutral response as a GenerateContentResponse; reasoning as ``thought`` parts."""
    parts: list[dict] = []
    for p in resp.parts:
        if isinstance(p, neutral.ReasoningPart) and p.text:
            parts.append({"text": p.text, "thought": True})
        elif isinstance(p, neutral.TextPart):
            parts.append({"text": p.text})
        elif isinstance(p, neutral.ToolCallPart):
            parts.append(_call_part(p.name, p.arguments, p.provider_data))
    return _response(parts, resp.finish or neutral.FinishReason.STOP, resp.usage, resp.model, resp.id)


class StreamEncoder:
    """Neutral events to google-genai stream chunks, SSE (``alt=sse``) or one JSON array.
    Tool calls are buffered until whole, since Gemini clients expect complete calls; the final chunk
    (finishReason + usage) is written by close(), so usage reported after Finish still makes it in."""

    def __init__(self, req: neutral.ChatRequest, route: neutral.Route) -> None:
        self._sse = route.sse
        self.content_type = "text/event-stream" if route.sse else "application/json"
        self._array = JSONArrayEncoder()
        self._meta = ("", "")
        self._calls: dict[int, list] = {}  # index -> [name, args text, provider_data]
        self._finish: neutral.FinishReason | None = None
        self._usage: neutral.Usage | None = None
        self._done = self._closed = self._relayed = False

    def _frame(self, data: bytes) -> bytes:
        return sse(data) if self._sse else self._array.encode(data)

    def _chunk(self, parts: list[dict], finish: neutral.FinishReason | None = None, usage: neutral.Usage | None = None
               ) -> bytes:
        return self._frame(orjson.dumps(_response(parts, finish, usage, *self._meta)))

    def _flush(self) -> list[dict]:
        parts = [_call_part(name, args, data) for name, args, data in self._calls.values()]
        self._calls = {}
        return parts

    def encode(self, event: neutral.Event) -> bytes:
        if self._done:
            return b""
        if isinstance(event, neutral.Start):
            self._meta = (event.model, event.id)
        elif isinstance(event, (neutral.TextDelta, neutral.ReasoningDelta)) and event.text:
            part = {"text": event.text, **({"thought": True} if isinstance(event, neutral.ReasoningDelta) else {})}
            calls = self._flush()
            return (self._chunk(calls) if calls else b"") + self._chunk([part])
        elif isinstance(event, neutral.ToolCallStart):
            self._calls[event.index] = [event.name, "", event.provider_data]
        elif isinstance(event, neutral.ToolCallDelta) and event.index in self._calls:
            self._calls[event.index][1] += event.args
        elif isinstance(event, neutral.Finish):
            self._finish = event.reason
        elif isinstance(event, neutral.UsageReport):
            self._usage = event.usage
        elif isinstance(event, neutral.StreamError):
            self._done = True
            return self._frame(encode_error(event.error)[2])
        return b""

    def close(self) -> bytes:
        out = b""
        if not self._done and not self._relayed:
            out = self._chunk(self._flush() or [{"text": ""}], self._finish or neutral.FinishReason.STOP, self._usage)
        self._done = True
        if not self._sse and not self._closed:
            self._closed = True
            out += self._array.close()
        return out

    def relay(self, frame: SSEFrame, events: list[neutral.Event]) -> bytes:
        """Fast path: SSE frames unchanged; for a JSON-array client each frame's data is one element."""
        self._relayed = True  # the upstream's own chunks carry finish and usage; close() adds none
        if self._sse:
            return frame.raw
        return self._array.encode(frame.data.encode()) if frame.data.strip() else b""


# ---------------------------------------------------------------- errors and models


def encode_error(err: neutral.GatewayError) -> tuple[int, dict[str, str], bytes]:
    """Google's error body ``{"error": {code, message, status}}``, with a RetryInfo detail
    and a retry-after header when a delay is known."""
    status = 503 if err.status == 529 else err.status
    body: dict[str, Any] = {"code": status, "message": err.message,
                            "status": _STATUS.get(status) or _KIND_STATUS.get(err.kind) or
                            ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")}
    headers = dict(err.headers)
    if err.retry_after is not None:
        seconds = headers["Retry-After"] = neutral.retry_seconds(err)
        body["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{seconds}s"}]
    return status, headers, orjson.dumps({"error": body})


def decode_error(status: int, body: bytes) -> neutral.GatewayError:
    """An upstream error, parsed defensively (JSON object or array, HTML, text). An invalid API key
    (400 API_KEY_INVALID, 401, 403) is the gateway's configuration problem: 502."""
    message, parsed = neutral.error_text(status, body)
    if parsed is None:
        return neutral.upstream_error(status, message)
    if isinstance(parsed, list) and parsed:  # streamGenerateContent without alt=sse wraps errors in an array
        parsed = parsed[0]
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict):
        return neutral.upstream_error(status, err if isinstance(err, str) else orjson.dumps(parsed).decode()[:300])
    message = str(err.get("message") or f"upstream answered {status}")
    details = [d for d in err.get("details") or () if isinstance(d, dict)]
    if any(d.get("reason") == "API_KEY_INVALID" for d in details):
        return neutral.upstream_error(401, message)
    out = neutral.upstream_error(status, message)
    for d in details:
        delay = d.get("retryDelay")
        if str(d.get("@type", "")).endswith("RetryInfo") and isinstance(delay, str) and delay.endswith("s"):
            try:
                out.retry_after = float(delay[:-1])
            except ValueError:
                pass
    return out


# ---------------------------------------------------------------- embeddings
# https://ai.google.dev/api/embeddings


def _embed_text(request: Any, where: str) -> str:
    content = request.get("content") if isinstance(request, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise neutral.invalid(f"{where}content.parts: required (the text to embed)", f"{where}content")
    texts = [p.get("text") for p in parts if isinstance(p, dict)]
    if len(texts) != len(parts) or not all(isinstance(t, str) for t in texts):
        raise neutral.invalid(f"{where}content.parts: only text parts can be embedded", f"{where}content")
    return "\n".join(texts)  # type: ignore[arg-type]


def decode_embed_request(body: dict, route: neutral.Route) -> neutral.EmbedRequest:
    """embedContent (one ``content``) or batchEmbedContents (``requests``, one each). One
    ``outputDimensionality`` and ``taskType`` for the whole batch: an OpenAI-compatible upstream
    takes one per call, so a batch that mixes them is refused rather than silently split."""
    if not isinstance(body, dict):
        raise neutral.invalid("the request body must be a JSON object")
    batch = "requests" in body
    requests = body["requests"] if batch else [body]
    if not isinstance(requests, list) or not requests or len(requests) > MAX_EMBED_BATCH:
        raise neutral.invalid(f"requests: between 1 and {MAX_EMBED_BATCH} requests", "requests")
    texts = [_embed_text(r, f"requests[{i}]." if batch else "") for i, r in enumerate(requests)]
    dims = {_g(r, "outputDimensionality") for r in requests}
    tasks = {_g(r, "taskType") for r in requests}
    if len(dims) > 1 or len(tasks) > 1:
        raise neutral.invalid("every request of a batch must ask for the same outputDimensionality and taskType",
                              "requests")
    dimensions, task = dims.pop(), tasks.pop()
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1):
        raise neutral.invalid("outputDimensionality: expected a positive integer", "outputDimensionality")
    return neutral.EmbedRequest(route.model, list(texts), dimensions, task_type=task if isinstance(task, str) else None,
                                batch=batch)


def encode_embed_request(req: neutral.EmbedRequest, model: str) -> tuple[str, dict]:
    """Always batchEmbedContents, as Google's SDKs do: one request per input, order kept."""
    if any(not isinstance(i, str) for i in req.inputs):
        raise neutral.invalid("input: Gemini embeds text; token arrays cannot be sent to it", "input")
    extra: dict[str, Any] = {}
    if req.dimensions is not None:
        extra["outputDimensionality"] = req.dimensions
    if req.task_type:
        extra["taskType"] = req.task_type
    name = f"models/{_bare(model)}"
    return (f"/v1beta/{quote(name, safe='/')}:batchEmbedContents",
            {"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **extra} for t in req.inputs]})


def decode_embed_response(body: dict) -> neutral.Embeddings:
    """Gemini reports no token usage for embeddings: ``input_tokens`` stays None (estimated later)."""
    try:
        found = body["embeddings"] if "embeddings" in body else [body["embedding"]]
        return neutral.Embeddings("", [[float(v) for v in e["values"]] for e in found])
    except (KeyError, TypeError, ValueError) as exc:
        raise neutral.GatewayError(502, neutral.ErrorKind.UPSTREAM, f"malformed upstream embeddings: {exc}") from None


def encode_embed_response(resp: neutral.Embeddings, req: neutral.EmbedRequest) -> dict:
    if req.batch:
        return {"embeddings": [{"values": v} for v in resp.vectors]}
    return {"embedding": {"values": resp.vectors[0] if resp.vectors else []}}


def route(path_args: tuple[str, ...], query: Mapping[str, list[bytes]]) -> neutral.Route:
    """The path names the model and the method; ``?alt=sse`` picks SSE over a JSON array."""
    _version, model, method = path_args
    return neutral.Route(model=model, stream=method == "streamGenerateContent",
                         sse=query.get("alt", [b""])[-1] == b"sse")


def decode_models(body: dict) -> list[str]:
    """Model ids from a models page, ``models/`` stripped; models that cannot generateContent skipped."""
    return [m["name"].removeprefix("models/") for m in body.get("models") or ()
            if isinstance(m, dict) and isinstance(m.get("name"), str)
            and "generateContent" in (m.get("supportedGenerationMethods") or ["generateContent"])]


def next_models_path(body: dict) -> str | None:
    """Gemini pages with ``nextPageToken`` (AIP-158: any page may be short, so follow the token)."""
    token = body.get("nextPageToken")
    return f"{MODELS_PATH}&pageToken={quote(token, safe='')}" if isinstance(token, str) and token else None


def encode_model(model_id: str) -> dict:
    """One Model; the token limits are typical Gemini values, the gateway knows no better."""
    model_id = _bare(model_id)
    return {"name": f"models/{model_id}", "displayName": model_id, "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536, "supportedGenerationMethods": ["generateContent", "countTokens"]}


def encode_models(ids: list[str]) -> dict:
    return {"models": [encode_model(i) for i in ids]}


def decode_count(body: dict, route: neutral.Route) -> neutral.ChatRequest:
    """A countTokens body: ``contents`` alone, or a whole ``generateContentRequest``."""
    if isinstance(body, dict):
        body = _g(body, "generateContentRequest") or body
    return decode_request(body, route)


def encode_count(tokens: int) -> dict:
    return {"totalTokens": tokens}
