"""Request parsers shared by every API view."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's JSON parser (strict: ``NaN``/``Infinity`` refused), answering 400 ``parse_error`` for a
    body nested beyond the interpreter's recursion limit instead of letting ``RecursionError``
    become a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type=media_type, parser_context=parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
