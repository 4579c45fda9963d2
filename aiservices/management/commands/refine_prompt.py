"""``manage.py refine_prompt --file template.json [--guidelines ...] [--context ...] [--dry-run]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from aiservices import services
from aiservices.exceptions import InvalidArguments
from aiservices.prompt_templates import refined_template, variables
from aiservices.providers import get_provider
from aiservices.tools.refine_prompt import RefinePromptTool
from syndarix.exceptions import DomainError


class Command(BaseCommand):
    help = (
        "Refine a JSON prompt template through the configured AI upstream (the refine_prompt tool) and "
        "print the refined template. The call is recorded like API calls. Exits non-zero on any error."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--file", required=True, help="Path of the JSON prompt template ('-' reads stdin).")
        parser.add_argument("--guidelines", default="", help="What to improve (at most 10,000 characters).")
        parser.add_argument("--context", default="", help="Background on how the prompt is used.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Check the template and configuration; call nothing, record nothing."
        )

    def handle(self, *args, **options) -> None:
        verbosity = options["verbosity"]
        text = self._read(options["file"])
        arguments = {"prompt_template_json": text}
        for name in ("guidelines", "context"):
            if options[name]:
                arguments[name] = options[name]

        if options["dry_run"]:
            self._dry_run(arguments, verbosity)
            return

        try:
            result = services.tool_call(user=None, name=RefinePromptTool.name, arguments=arguments)
        except InvalidArguments as exc:
            raise CommandError(self._problems(exc)) from exc
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        if result.is_error:
            raise CommandError(f"{result.text} (trace id {result.trace_id})")

        template = json.loads(text)
        self.stdout.write(json.dumps(refined_template(template, result.structured["messages"]), indent=2,
                                     ensure_ascii=False))
        if verbosity >= 1:
            self.stderr.write(self.style.SUCCESS(f"Refined: {result.structured['summary']}"))
        if verbosity >= 2:
            tokens = f", {result.tokens} tokens" if result.tokens is not None else ""
            self.stderr.write(f"Trace id {result.trace_id}{tokens}")

    def _read(self, path: str) -> str:
        if path == "-":
            return sys.stdin.read()
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {path}: {exc}") from exc

    def _problems(self, exc: InvalidArguments) -> str:
        lines = [f"  {field.removeprefix('arguments.')}: {message}" for field, message in exc.problems]
        return "Invalid arguments:\n" + "\n".join(lines)

    def _dry_run(self, arguments: dict, verbosity: int) -> None:
        try:
            _, checked = services.tool_validate(name=RefinePromptTool.name, arguments=arguments)
        except InvalidArguments as exc:
            raise CommandError(self._problems(exc)) from exc
        template = json.loads(checked["prompt_template_json"])
        count = len(template["messages"])
        names = sorted({n for m in template["messages"] for n in variables(m["content"])})
        if verbosity >= 1:
            self.stdout.write(
                f"Template OK: {count} message{'s' if count != 1 else ''}, variables: "
                + (", ".join("{{" + n + "}}" for n in names) or "none")
            )
        missing = services.ai_services_missing_settings()
        if missing:
            raise CommandError(f"AI services are disabled; missing: {', '.join(missing)}.")
        provider = get_provider()
        if verbosity >= 1:
            self.stdout.write(f"Would call the '{provider.name}' provider at {provider.base_url}.")
            self.stdout.write(self.style.SUCCESS("Dry run: nothing was sent or recorded."))
