"""The chat-completions client the agent runtime calls (and meters, in ``agents.runtime.metering``).

Providers, chosen by ``AGENT_LLM_PROVIDER``:

- ``openai``: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, a LiteLLM
  proxy...): ``POST {AGENT_LLM_API_URL}/chat/completions`` through the same HTTP client and error
  mapping as the AI tools (``aiservices.client.post_json``), with the ``AGENT_LLM_*`` timeouts.
  A 429 or 5xx answer and a failed connection are retried up to ``AGENT_LLM_MAX_RETRIES`` times with
  exponential backoff (``AGENT_LLM_RETRY_BACKOFF_SECONDS`` × 2ⁿ, or the upstream's ``Retry-After``,
  at most ``MAX_BACKOFF_SECONDS``); other failures are not retried. One completion, retries and waits
  included, ends within ``AGENT_LLM_TOTAL_TIMEOUT`` seconds of wall clock (``UpstreamTimeout`` past it),
  however slowly the upstream drips its answer.
- ``offline``: **the offline provider**, a scripted stand-in used when no upstream is configured in
  a debug deployment (``make run``). It calls no model: it calls each offered read tool once, then
  ``write_context`` once when offered, then answers with a summary. Its model is named ``offline``
  and every answer says so. The settings refuse it when ``DJANGO_DEBUG`` is false.

Wire format: OpenAI's documented Chat Completions request, and nothing llama.cpp, vLLM, Ollama or LiteLLM
rejects (``ChatRequest.body``). A request carries ``model``, ``messages`` (``{"role", "content"}``, assistant
messages with ``tool_calls`` and ``content: ""`` — never ``null``, which llama-cpp-python refuses — and ``tool``
messages with ``tool_call_id``), ``tools`` (``{"type": "function", "function": {"name", "description",
"parameters"}}``) with ``tool_choice`` whenever tools are offered (``AGENT_LLM_TOOL_CHOICE``, default ``auto``:
without it llama-cpp-python's function-calling chat formats leave the tools out of the prompt), and
``max_tokens`` (``AGENT_LLM_MAX_TOKENS``; 0 sends none). Headers: ``X-Request-ID`` is a plain UUID (servers that
check it want one); the run and the step go in ``X-Syndarix-Run-ID`` and ``X-Syndarix-Step``. The answer's
``choices[0].message`` is the assistant message and ``usage`` holds ``prompt_tokens`` and ``completion_tokens``.

Errors: the upstream's own text (``UpstreamHTTPError.detail``) travels with the error. A request the upstream
refuses as invalid (400, 413 or 422, or a 5xx whose text is a validation error: ``request_invalid``) is not retried:
sending it again cannot help. Connection errors, timeouts, 429 and other 5xx are ``transient``. An answer that is
a chat completion but empty or unusable raises ``BadAnswer`` (``empty_answer`` / ``unparsable_answer``) with the
usage the upstream reported and the raw answer, so the caller can meter it, keep it, and ask again once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from django.conf import settings

from . import client
from .exceptions import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnreachable,
)

logger = logging.getLogger(__name__)

#: The longest wait between two attempts (seconds), whatever ``Retry-After`` asks.
MAX_BACKOFF_SECONDS = 20.0

OFFLINE = "offline"
OPENAI = "openai"
#: Headers naming the run and the step of a call (``X-Request-ID`` stays a plain UUID).
RUN_HEADER = "X-Syndarix-Run-ID"
STEP_HEADER = "X-Syndarix-Step"
#: Characters of an error answer's text that mark a refused request rather than a failing server: pydantic's and
#: FastAPI's validation messages (llama-cpp-python answers 500 with them), OpenAI's and vLLM's error types.
_INVALID_REQUEST_MARKERS = (
    "validation error", "input should be", "field required", "invalid_request_error", "badrequesterror",
    "extra inputs are not permitted", "unprocessable",
)
#: What the model is told when its answer was empty or unusable (asked once more, then the run fails).
NUDGES = {
    "empty_answer": "Your last answer was empty. Answer in text, or call one of the tools.",
    "unparsable_answer": (
        "Your last answer could not be read. Answer in plain text, or call one of the tools with JSON arguments."
    ),
}


class BadAnswer(UpstreamBadResponse):
    """The upstream answered a chat completion that cannot be used: empty (no text and no tool calls:
    ``code`` ``empty_answer``) or unparsable (no choices, no message, content that is not text, malformed
    ``tool_calls``: ``unparsable_answer``).

    Attributes:
        prompt_tokens, completion_tokens: the usage the upstream reported (tokens; 0 when it reported none).
        model: the model that answered (else the one asked for).
        raw: the answer as received (any JSON).
        nudge: the user message that asks the model to try again.
    """

    def __init__(self, code: str, message: str, *, raw: Any, model: str, prompt_tokens: int = 0,
                 completion_tokens: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.raw = raw
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens

    @property
    def nudge(self) -> dict[str, str]:
        return {"role": "user", "content": NUDGES[self.code]}


def request_invalid(exc: UpstreamError) -> bool:
    """True when the upstream refused the request itself: HTTP 400, 413 or 422, or a 5xx whose text is a
    validation error (llama-cpp-python answers a pydantic validation error with 500). Sending it again cannot
    help."""
    if not isinstance(exc, UpstreamHTTPError) or exc.status is None:
        return False
    if exc.status in (400, 413, 422):
        return True
    detail = exc.detail.lower()
    return exc.status >= 500 and any(marker in detail for marker in _INVALID_REQUEST_MARKERS)


def transient(exc: UpstreamError) -> bool:
    """True for a failure that may pass: the connection failed or timed out, the upstream rate-limits (429) or
    fails (5xx) — unless it refused the request as invalid (``request_invalid``). Other 4xx and bad answers are
    not transient."""
    if isinstance(exc, UpstreamTimeout | UpstreamUnreachable):
        return True
    if isinstance(exc, UpstreamHTTPError) and exc.status is not None:
        return (exc.status == 429 or exc.status >= 500) and not request_invalid(exc)
    return False


def error_text(exc: UpstreamError) -> str:
    """``exc.message`` followed by the upstream's own text, when it said something: ``The AI service failed (HTTP
    500). Upstream: Input should be a valid string``."""
    detail = getattr(exc, "detail", "")
    return f"{exc.message} Upstream: {detail}" if detail else exc.message


@dataclass(frozen=True)
class ChatCompletion:
    """One answer of the model.

    Attributes:
        message: the assistant message as the API returned it: ``{"role": "assistant", "content":
            str | None, "tool_calls"?: [{"id", "type": "function", "function": {"name", "arguments"
            (a JSON string)}}]}``.
        model: the model that answered (the upstream's ``model``, else the one asked for).
        prompt_tokens, completion_tokens: tokens from the upstream's ``usage`` (0 when it reported none).
        finish_reason: ``stop``, ``tool_calls``, ``length``... or ``None``.
        provider: ``openai`` or ``offline``.
        attempts: HTTP attempts it took (retries included).
    """

    message: dict[str, Any]
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    provider: str = OPENAI
    attempts: int = 1
    usage_reported: bool = True

    @property
    def content(self) -> str:
        """The text of the answer (``""`` when it only calls tools)."""
        return self.message.get("content") or ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """The tool calls the model asked for, in order (empty when it answered)."""
        return list(self.message.get("tool_calls") or [])


@dataclass
class ChatRequest:
    """What to ask: ``messages`` and ``tools`` in the wire format; ``params`` are extra body keys
    (``temperature``, ``max_tokens``, ``tool_choice``...); ``headers`` extra HTTP headers (``RUN_HEADER``...)."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: Called with each piece of the answer's text as it streams (``AGENT_LLM_STREAM``); ``None``: not streamed.
    on_delta: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``params``, then ``model``, ``messages`` (assistant tool-call messages with ``content:
        ""``), ``tools`` and ``tool_choice`` (``params``' or ``AGENT_LLM_TOOL_CHOICE``) when tools are offered,
        ``max_tokens`` (``params``' or ``AGENT_LLM_MAX_TOKENS`` when not 0). ``tool_choice`` is never sent
        without tools (OpenAI refuses it)."""
        body = {key: value for key, value in self.params.items() if key != "tool_choice"}
        body.update(model=self.model, messages=[_sendable(message) for message in self.messages])
        if self.tools:
            body["tools"] = self.tools
            choice = self.params.get("tool_choice") or settings.AGENT_LLM_TOOL_CHOICE
            if choice:
                body["tool_choice"] = choice
        if "max_tokens" not in body and settings.AGENT_LLM_MAX_TOKENS > 0:
            body["max_tokens"] = settings.AGENT_LLM_MAX_TOKENS
        return body


def _sendable(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` as every server takes it: an assistant message's ``content: null`` becomes ``""``."""
    if message.get("role") == "assistant" and message.get("content") is None:
        return {**message, "content": ""}
    return message


class ChatProvider:
    """A way to get chat completions."""

    name: str = ""

    def complete(self, request: ChatRequest, *, request_id: str) -> ChatCompletion:
        """Ask for one completion; ``request_id`` (a UUID) goes in ``X-Request-ID``.

        Raises ``UpstreamError`` subclasses: ``UpstreamTimeout``, ``UpstreamUnreachable``,
        ``UpstreamHTTPError`` (with ``status`` and ``detail``), ``UpstreamBadResponse`` (``BadAnswer`` for a chat
        completion that is empty or unusable).
        """
        raise NotImplementedError


class OpenAIChatProvider(ChatProvider):
    """``POST {AGENT_LLM_API_URL}/chat/completions``, ``Authorization: Bearer`` when a key is set."""

    name = OPENAI

    def complete(self, request: ChatRequest, *, request_id: str) -> ChatCompletion:
        base = settings.AGENT_LLM_API_URL.strip().rstrip("/")
        if not base:
            raise UpstreamUnreachable("No LLM upstream is configured: set AGENT_LLM_API_URL.")
        headers = dict(request.headers)
        if settings.AGENT_LLM_API_KEY.strip():
            headers["Authorization"] = f"Bearer {settings.AGENT_LLM_API_KEY.strip()}"
        retries = max(0, settings.AGENT_LLM_MAX_RETRIES)
        total = settings.AGENT_LLM_TOTAL_TIMEOUT
        deadline = time.monotonic() + total
        stream = request.on_delta is not None and settings.AGENT_LLM_STREAM
        for attempt in range(retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"The AI service did not answer within {total:g} s.")
            collector = StreamedAnswer(request.on_delta) if stream else None
            payload = request.body()
            if collector is not None:
                payload.update(stream=True, stream_options={"include_usage": True})
            try:
                answer = client.post_json(
                    f"{base}/chat/completions", payload=payload, headers=headers, request_id=request_id,
                    settings_prefix="AGENT_LLM", total_timeout=remaining,
                    on_event=collector.add if collector is not None else None,
                ).body
                if answer is None and collector is not None:
                    answer = collector.completion()
            except (UpstreamHTTPError, UpstreamBadResponse) as exc:
                if collector is None or not _stream_refused(exc):
                    if isinstance(exc, UpstreamBadResponse) or attempt == retries or not transient(exc):
                        raise
                    delay = _backoff(attempt, getattr(exc, "retry_after", None))
                    if delay >= deadline - time.monotonic():
                        raise
                    logger.warning("LLM call %s failed (%s); retry %d of %d in %.2f s", request_id,
                                   error_text(exc), attempt + 1, retries, delay)
                    time.sleep(delay)
                    continue
                # The upstream refused the streamed request or streamed it badly: ask it without streaming (this
                # call; set AGENT_LLM_STREAM=false for an upstream that never streams).
                logger.warning("LLM upstream %s did not stream chat completion %s (%s); asking without streaming",
                               base, request_id, error_text(exc))
                stream = False
                try:
                    answer = client.post_json(
                        f"{base}/chat/completions", payload=request.body(), headers=headers, request_id=request_id,
                        settings_prefix="AGENT_LLM", total_timeout=max(0.001, deadline - time.monotonic()),
                    ).body
                except (UpstreamHTTPError, UpstreamUnreachable) as again:
                    if attempt == retries or not transient(again):
                        raise
                    time.sleep(min(_backoff(attempt, getattr(again, "retry_after", None)),
                                   max(0.0, deadline - time.monotonic())))
                    continue
            except UpstreamUnreachable as exc:
                if attempt == retries or not transient(exc):
                    raise
                delay = _backoff(attempt, getattr(exc, "retry_after", None))
                if delay >= deadline - time.monotonic():
                    raise  # no time left for another attempt within AGENT_LLM_TOTAL_TIMEOUT
                logger.warning("LLM call %s failed (%s); retry %d of %d in %.2f s", request_id, error_text(exc),
                               attempt + 1, retries, delay)
                time.sleep(delay)
                continue
            return parse_completion(answer, asked_model=request.model, attempts=attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _stream_refused(exc: UpstreamError) -> bool:
    """The upstream could not stream this call: it refused the request naming ``stream`` (a 400, 413 or 422 whose
    text mentions it, such as an unsupported ``stream_options``), or what it streamed cannot be read."""
    if isinstance(exc, UpstreamStreamBroken):
        return True
    return isinstance(exc, UpstreamHTTPError) and request_invalid(exc) and "stream" in (exc.detail or "").lower()


class StreamedAnswer:
    """Assembles the chunks of a streamed chat completion (``chat.completion.chunk``: ``choices[0].delta`` with
    ``content`` and ``tool_calls`` pieces by ``index``, ``finish_reason``, and the ``usage`` of the last chunk with
    ``stream_options.include_usage``) into the ``chat.completion`` answer ``parse_completion`` reads, passing each
    piece of text to ``on_delta`` as it comes. Contract: OpenAI's Chat Completions streaming."""

    def __init__(self, on_delta: Callable[[str], None] | None) -> None:
        self.on_delta = on_delta
        self.text: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.model: str | None = None
        self.id: str | None = None
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        """Take one chunk (its JSON); raises ``UpstreamBadResponse`` for one that is not a chunk object."""
        if not isinstance(chunk, dict):
            raise UpstreamStreamBroken("The AI service streamed a chunk that is not an object.")
        if "error" in chunk and "choices" not in chunk:
            detail = chunk["error"].get("message") if isinstance(chunk["error"], dict) else chunk["error"]
            raise UpstreamStreamBroken(f"The AI service failed while streaming: {detail}")
        self.chunks += 1
        self.model = chunk.get("model") or self.model
        self.id = chunk.get("id") or self.id
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            text = delta.get("content")
            if isinstance(text, str) and text:
                self.text.append(text)
                if self.on_delta is not None:
                    try:
                        self.on_delta(text)
                    except Exception:  # noqa: BLE001 - a lost delta never fails the call
                        logger.debug("on_delta failed", exc_info=True)
            for piece in delta.get("tool_calls") or ():
                if not isinstance(piece, dict):
                    continue
                empty = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                call = self.tool_calls.setdefault(int(piece.get("index", 0)), empty)
                call["id"] = piece.get("id") or call["id"]
                call["type"] = piece.get("type") or call["type"]
                function = piece.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""

    def completion(self) -> dict[str, Any]:
        """The assembled ``chat.completion`` answer. Raises ``UpstreamBadResponse`` when no chunk came."""
        if not self.chunks:
            raise UpstreamStreamBroken("The AI service streamed no chunk.")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.text) if self.text else None}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index] for index in sorted(self.tool_calls)]
        answer = {"id": self.id, "object": "chat.completion", "model": self.model,
                  "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason or "stop"}]}
        if self.usage is not None:
            answer["usage"] = self.usage
        return answer


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = settings.AGENT_LLM_RETRY_BACKOFF_SECONDS * (2**attempt)
    return min(MAX_BACKOFF_SECONDS, retry_after if retry_after is not None else base)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_completion(answer: Any, *, asked_model: str, attempts: int = 1, provider: str = OPENAI) -> ChatCompletion:
    """Check an OpenAI Chat Completions answer and return its ``ChatCompletion``.

    A ``refusal`` without content is answered as the text of the refusal.

    Raises:
        BadAnswer: ``unparsable_answer`` (no ``choices``, no message, ``content`` that is not text, or
            ``tool_calls`` that are not ``[{"id", "function": {"name", "arguments"}}]``) or ``empty_answer``
            (neither content nor tool calls), with the usage the answer reported.
    """
    body = answer if isinstance(answer, dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    model = body.get("model") if isinstance(body.get("model"), str) and body.get("model") else asked_model

    def bad(code: str, why: str) -> BadAnswer:
        text = "was empty (no content and no tool calls)" if code == "empty_answer" else f"could not be read ({why})"
        return BadAnswer(code, f"The LLM's answer {text}.", raw=answer, model=model, prompt_tokens=prompt or 0,
                         completion_tokens=completion or 0)

    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise bad("unparsable_answer", "no choices")
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message")
    if not isinstance(message, dict):
        raise bad("unparsable_answer", "no message")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise bad("unparsable_answer", "content is not text")
    tool_calls = message.get("tool_calls") or []
    if not isinstance(tool_calls, list) or not all(_is_tool_call(call) for call in tool_calls):
        raise bad("unparsable_answer", "malformed tool_calls")
    if not (content or "").strip() and not tool_calls:
        if message.get("refusal"):
            return ChatCompletion(
                message={"role": "assistant", "content": str(message["refusal"])}, model=model,
                prompt_tokens=prompt or 0, completion_tokens=completion or 0, finish_reason="refusal",
                provider=provider, attempts=attempts,
            )
        raise bad("empty_answer", "")
    clean = {"role": "assistant", "content": content}
    if tool_calls:
        clean["tool_calls"] = [
            {"id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"], "arguments": call["function"].get("arguments") or "{}"}}
            for call in tool_calls
        ]
    return ChatCompletion(
        message=clean, model=model, prompt_tokens=prompt or 0, completion_tokens=completion or 0,
        finish_reason=choice.get("finish_reason"), provider=provider, attempts=attempts,
        usage_reported=prompt is not None and completion is not None,
    )


def _is_tool_call(call: Any) -> bool:
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
        return False
    function = call.get("function")
    return (
        isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and bool(function["name"])
        and isinstance(function.get("arguments", "{}"), str | type(None))
    )


# --- The offline provider ------------------------------------------------------------------------------

#: Read tools the offline provider calls on its first turn, when offered (in this order).
OFFLINE_READS = ("query_agents", "query_issues", "read_context")
#: The shared context the offline provider reads and writes.
OFFLINE_CONTEXT = "notes"
#: An instruction that says this makes the offline provider ask the person for input first.
ASK = re.compile(r"\bask\b", re.IGNORECASE)
#: What it asks for (an MCP elicitation ``requestedSchema``).
OFFLINE_QUESTION = {
    "type": "object",
    "properties": {"answer": {"type": "string", "description": "Your answer, in a sentence."}},
    "required": ["answer"],
}


class OfflineChatProvider(ChatProvider):
    """The offline provider: a scripted stand-in for an LLM, for demos without an upstream.

    Turn by turn, from the conversation so far: (0) when the instruction says "ask" and ``request_input``
    is offered, ask the person once for an ``answer`` (an MCP elicitation); (1) call every offered read
    tool of ``OFFLINE_READS`` it has not called (``read_context`` on the shared context ``notes``);
    (2) call ``write_context`` once, when offered, merging a note about this run into ``notes``;
    (3) answer, naming itself the offline provider and counting the tool results it saw. Usage is
    estimated at 4 characters per token, so metering, budgets and the price table work as with a real
    model.
    """

    name = OFFLINE

    def complete(self, request: ChatRequest, *, request_id: str) -> ChatCompletion:
        offered = {tool["function"]["name"] for tool in request.tools if tool.get("type") == "function"}
        called = {
            call["function"]["name"]
            for message in request.messages if message.get("role") == "assistant"
            for call in message.get("tool_calls") or []
        }
        instruction = next(
            (m.get("content") or "" for m in reversed(request.messages) if m.get("role") == "user"), ""
        )
        reads = [name for name in OFFLINE_READS if name in offered and name not in called]
        if "request_input" in offered and "request_input" not in called and ASK.search(instruction):
            arguments = {"message": "What should the note say?", "requestedSchema": OFFLINE_QUESTION}
            message = {"role": "assistant", "content": None, "tool_calls": [self._call("request_input", arguments)]}
        elif reads:
            calls = [self._call(name, {"name": OFFLINE_CONTEXT} if name == "read_context" else {}) for name in reads]
            message = {"role": "assistant", "content": None, "tool_calls": calls}
        elif "write_context" in offered and "write_context" not in called:
            note = {"instruction": instruction[:500], "at": datetime.now(UTC).isoformat(timespec="seconds")}
            answered = [_json(m.get("content")).get("content") for m in request.messages if m.get("role") == "tool"]
            note.update(next((a for a in answered if isinstance(a, dict)), {}))
            arguments = {
                "name": OFFLINE_CONTEXT, "mode": "merge", "data": {"last_run": note},
                "change_description": "Note written by the offline provider",
            }
            message = {"role": "assistant", "content": None, "tool_calls": [self._call("write_context", arguments)]}
        else:
            results = [m for m in request.messages if m.get("role") == "tool"]
            failed = sum(1 for m in results if '"error"' in (m.get("content") or ""))
            text = (
                "[offline provider: no LLM is configured, this answer is scripted] "
                f"Done with: {instruction[:200].rstrip('. ') or 'the task'}. "
                f"I called {len(results)} tool(s); {failed} returned an error."
            )
            message = {"role": "assistant", "content": text}
        prompt_chars = len(json.dumps(request.messages)) + len(json.dumps(request.tools))
        return ChatCompletion(
            message=message, model=OFFLINE, provider=OFFLINE,
            prompt_tokens=math.ceil(prompt_chars / 4), completion_tokens=math.ceil(len(json.dumps(message)) / 4),
            finish_reason="tool_calls" if message.get("tool_calls") else "stop",
        )

    @staticmethod
    def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


PROVIDERS: dict[str, type[ChatProvider]] = {OPENAI: OpenAIChatProvider, OFFLINE: OfflineChatProvider}


def served_models() -> list[str] | None:
    """The model ids the upstream lists (``GET {AGENT_LLM_API_URL}/models``: ``{"data": [{"id"}, ...]}``, which
    OpenAI, vLLM, llama.cpp, llama-cpp-python, Ollama and LiteLLM all serve), or ``None`` when it cannot say: no
    upstream, a failed request, an answer of another shape. Uses the ``AGENT_LLM`` connect and read timeouts."""
    base = settings.AGENT_LLM_API_URL.strip().rstrip("/")
    if not base or settings.AGENT_LLM_PROVIDER != OPENAI:
        return None
    headers = {"Authorization": f"Bearer {settings.AGENT_LLM_API_KEY.strip()}"} if settings.AGENT_LLM_API_KEY else {}
    try:
        response = client.get_session().get(
            f"{base}/models", headers=headers, allow_redirects=False,
            timeout=(settings.AGENT_LLM_CONNECT_TIMEOUT, settings.AGENT_LLM_READ_TIMEOUT),
        )
        data = response.json().get("data") if response.ok else None
    except (ValueError, AttributeError, requests.RequestException):
        return None
    if not isinstance(data, list):
        return None
    return [item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)]


def unserved_model_warning() -> str | None:
    """A warning when the upstream lists its models and ``AGENT_LLM_MODEL`` is not one of them (the calls of every
    agent that names no model would fail), else ``None``. Logged when a worker starts."""
    models = served_models()
    if not models or settings.AGENT_LLM_MODEL in models:
        return None
    listed = ", ".join(models[:10]) + (", ..." if len(models) > 10 else "")
    return (f"AGENT_LLM_MODEL is '{settings.AGENT_LLM_MODEL}', which {settings.AGENT_LLM_API_URL} does not list "
            f"among its models ({listed}): agents that name no model will fail. Set AGENT_LLM_MODEL to one of them.")


def get_chat_provider() -> ChatProvider:
    """The provider ``AGENT_LLM_PROVIDER`` names (the settings refuse ``offline`` when ``DJANGO_DEBUG`` is false).

    Raises:
        UpstreamUnreachable: an unknown provider name.
    """
    name = str(settings.AGENT_LLM_PROVIDER or "").strip().lower()
    provider = PROVIDERS.get(name)
    if provider is None:
        raise UpstreamUnreachable(f"Unknown AGENT_LLM_PROVIDER '{name}' (use openai or offline).")
    return provider()
