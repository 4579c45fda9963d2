"""Upstream LLM providers of the refine-prompt tool, chosen by ``AI_SERVICES_PROVIDER``.

- ``agenta``: a prompt deployed in an Agenta project, run through
  ``POST {AI_SERVICES_API_URL}/services/completion/run`` (agenta-contracts.md A7).
- ``openai``: any OpenAI-compatible Chat Completions endpoint (OpenAI, vLLM, Ollama, llama.cpp,
  LM Studio...), ``POST {AI_SERVICES_API_URL}/chat/completions`` with Syndarix's own system prompt.
- ``offline``: **the offline stand-in**, a scripted refinement for debug deployments without an upstream
  (``make run``); it calls no model and says so. The settings refuse it when ``DJANGO_DEBUG`` is false.

A provider is enabled exactly when all its ``required_settings`` are non-blank. A provider returns
the upstream's output object unchecked (``RefineOutput.output``); the tool validates it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from . import client
from .choices import Provider
from .exceptions import UpstreamBadResponse
from .prompt_templates import OUTPUT_SCHEMA


@dataclass(frozen=True)
class RefineOutput:
    """What a provider got back: the decoded ``output`` (any JSON value), the upstream's
    ``trace_id`` (or ``None``) and ``tokens`` (total tokens, or ``None`` when not reported)."""

    output: Any
    trace_id: str | None = None
    tokens: int | None = None


class BaseProvider:
    """A way to reach an upstream LLM service."""

    name: str = ""
    #: Settings that must all be non-blank for the provider to be enabled.
    required_settings: tuple[str, ...] = ()

    def missing_settings(self) -> list[str]:
        """Names of required settings that are blank."""
        return [name for name in self.required_settings if not str(getattr(settings, name, "") or "").strip()]

    @property
    def base_url(self) -> str:
        return settings.AI_SERVICES_API_URL.strip().rstrip("/")

    def refine_prompt(
        self, *, prompt_template_json: str, guidelines: str, context: str, request_id: str
    ) -> RefineOutput:
        """Ask the upstream to refine a prompt template.

        Args:
            prompt_template_json: the template as the caller sent it (a JSON string).
            guidelines, context: free text, ``""`` when not given.
            request_id: Syndarix's id of this call, sent upstream as ``X-Request-ID``.

        Raises ``UpstreamError`` (timeout, unreachable, non-2xx, not JSON, wrong shape).
        """
        raise NotImplementedError


class AgentaProvider(BaseProvider):
    """A refine prompt deployed in an Agenta environment.

    Request: ``Authorization: ApiKey <key>``, body ``{"inputs": {"__ag_prompt_template_json",
    "__ag_guidelines", "__ag_context"}, "environment": <slug>, "app": <refine prompt key>}``.
    Answer: ``{"version", "data": "<JSON string of the output>", "trace_id"|"traceId", ...}``.
    """

    name = Provider.AGENTA
    required_settings = (
        "AI_SERVICES_API_URL",
        "AI_SERVICES_API_KEY",
        "AI_SERVICES_ENVIRONMENT_SLUG",
        "AI_SERVICES_REFINE_PROMPT_KEY",
    )

    def refine_prompt(self, *, prompt_template_json, guidelines, context, request_id) -> RefineOutput:
        payload = {
            "inputs": {
                "__ag_prompt_template_json": prompt_template_json,
                "__ag_guidelines": guidelines or "",
                "__ag_context": context or "",
            },
            "environment": settings.AI_SERVICES_ENVIRONMENT_SLUG.strip(),
            "app": settings.AI_SERVICES_REFINE_PROMPT_KEY.strip(),
        }
        headers = {"Authorization": f"ApiKey {settings.AI_SERVICES_API_KEY.strip()}"}
        answer = client.post_json(
            f"{self.base_url}/services/completion/run", payload=payload, headers=headers, request_id=request_id
        ).body
        if not isinstance(answer, dict):
            raise UpstreamBadResponse("The AI service returned an unexpected response format (not an object).")
        trace_id = answer.get("trace_id") or answer.get("traceId")
        trace_id = str(trace_id) if trace_id else None
        data = answer.get("data")
        if isinstance(data, str) and data.strip():
            output = _loads(data, trace_id=trace_id)
        elif isinstance(data, dict):
            output = data
        else:
            raise UpstreamBadResponse(
                "The AI service returned an unexpected response format (no 'data').", trace_id=trace_id
            )
        return RefineOutput(output=output, trace_id=trace_id, tokens=None)


SYSTEM_PROMPT = """\
You refine prompt templates for large language models.

The user message is a JSON object with:
- "prompt_template": the template to refine; its "messages" list holds {"role", "content"} objects;
- "guidelines": what the author wants changed (may be empty);
- "context": background on how the prompt is used (may be empty).

Rules:
1. Improve ONLY the "content" of the messages: clarity, structure, precision, following the guidelines.
2. Keep exactly the same number of messages, in the same order, each with the same "role".
3. Keep every variable token written in double curly braces (for example {{country}}) unchanged, \
in the same message it appears in. Do not rename, remove or reformat any of them.
4. Do not add any new variable token in double curly braces.
5. Do not change template_format, input_keys or llm_config; do not return them.

Answer with a single JSON object and nothing else:
{"messages": [{"role": "...", "content": "..."}, ...], "summary": "<one or two sentences on what changed>"}
"""

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class OpenAIProvider(BaseProvider):
    """Any OpenAI-compatible Chat Completions endpoint.

    Request: ``Authorization: Bearer <key>`` (only when ``AI_SERVICES_API_KEY`` is set: local
    servers often need none), ``model`` = ``AI_SERVICES_MODEL``, ``SYSTEM_PROMPT`` plus one user
    message, ``response_format`` a strict JSON schema of the output. Answer: the output JSON in
    ``choices[0].message.content``; ``usage.total_tokens`` is recorded; the trace id is the
    upstream's ``x-request-id`` header when present.
    """

    name = Provider.OPENAI
    required_settings = ("AI_SERVICES_API_URL", "AI_SERVICES_MODEL")

    def refine_prompt(self, *, prompt_template_json, guidelines, context, request_id) -> RefineOutput:
        user_message = json.dumps(
            {
                "prompt_template": json.loads(prompt_template_json),
                "guidelines": guidelines or "",
                "context": context or "",
            },
            ensure_ascii=False,
        )
        payload = {
            "model": settings.AI_SERVICES_MODEL.strip(),
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "refined_prompt", "strict": True, "schema": OUTPUT_SCHEMA},
            },
        }
        headers = {}
        if settings.AI_SERVICES_API_KEY.strip():
            headers["Authorization"] = f"Bearer {settings.AI_SERVICES_API_KEY.strip()}"
        response = client.post_json(
            f"{self.base_url}/chat/completions", payload=payload, headers=headers, request_id=request_id
        )
        trace_id = response.headers.get("x-request-id") or None
        answer = response.body
        tokens = _total_tokens(answer)
        choice = _first_choice(answer)
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str) or not content.strip():
            if isinstance(message, dict) and message.get("refusal"):
                raise UpstreamBadResponse("The model refused to refine this prompt.", trace_id=trace_id)
            raise UpstreamBadResponse(
                "The AI service returned an unexpected response format (no message content).", trace_id=trace_id
            )
        if choice.get("finish_reason") == "length":
            raise UpstreamBadResponse(
                "The model stopped before finishing its answer (output length limit).", trace_id=trace_id
            )
        fenced = _FENCE.match(content)
        output = _loads(fenced.group(1) if fenced else content, trace_id=trace_id)
        return RefineOutput(output=output, trace_id=trace_id, tokens=tokens)


def _first_choice(answer: Any) -> Any:
    if isinstance(answer, dict) and isinstance(answer.get("choices"), list) and answer["choices"]:
        return answer["choices"][0]
    raise UpstreamBadResponse("The AI service returned an unexpected response format (no choices).")


def _total_tokens(answer: Any) -> int | None:
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return None
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    if all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in parts):
        return sum(parts)
    return None


def _loads(text: str, *, trace_id: str | None) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise UpstreamBadResponse(
            "The AI service returned an unexpected response format (its output is nested too deeply to read).",
            trace_id=trace_id,
        ) from exc
    except ValueError as exc:
        raise UpstreamBadResponse(
            "The AI service returned an unexpected response format (its output is not valid JSON).",
            trace_id=trace_id,
        ) from exc


class OfflineProvider(BaseProvider):
    """The offline stand-in: a scripted refinement for demos without an upstream, like the runtime's offline
    provider (``aiservices.llm.OfflineChatProvider``).

    No model is called and nothing leaves the process. Each message keeps its role and its text, with runs of
    spaces and of blank lines tidied; the guidelines (their braces dropped, so they add no ``{{variable}}``) are
    appended to the first system or developer message; the summary starts "[offline stand-in: ...]". The answer
    goes through the same checks as an upstream's. Needs no settings; refused when ``DJANGO_DEBUG`` is false.
    """

    name = Provider.OFFLINE
    #: The summary's opening words: every answer names the stand-in.
    LABEL = "[offline stand-in: no AI service is configured, this refinement is scripted]"

    def refine_prompt(self, *, prompt_template_json, guidelines, context, request_id) -> RefineOutput:
        messages = json.loads(prompt_template_json)["messages"]
        notes = " ".join((guidelines or "").replace("{", "").replace("}", "").split())
        refined, added = [], False
        for message in messages:
            content = _tidy(message["content"])
            if notes and not added and message["role"] in ("system", "developer"):
                content, added = f"{content}\n\nGuidelines: {notes}", True
            refined.append({"role": message["role"], "content": content})
        done = "Added the guidelines to the system message." if added else "Tidied the whitespace."
        return RefineOutput(output={"messages": refined, "summary": f"{self.LABEL} {done}"})


def _tidy(text: str) -> str:
    """``text`` with runs of spaces or tabs made one space, lines stripped, and at most one blank line in a row."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


PROVIDERS: dict[str, type[BaseProvider]] = {
    Provider.AGENTA: AgentaProvider, Provider.OPENAI: OpenAIProvider, Provider.OFFLINE: OfflineProvider,
}


def get_provider() -> BaseProvider | None:
    """The provider named by ``AI_SERVICES_PROVIDER`` (case-insensitive), or ``None`` if unknown."""
    provider_cls = PROVIDERS.get(str(settings.AI_SERVICES_PROVIDER or "").strip().lower())
    return provider_cls() if provider_cls else None
