"""The API's JSON renderer: DRF's output, byte for byte, encoded by orjson."""

from __future__ import annotations

import orjson
from rest_framework import renderers

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class JSONRenderer(renderers.JSONRenderer):
    """``rest_framework.renderers.JSONRenderer`` with orjson doing the encoding (several times faster on a page of
    agents). The bytes are DRF's: compact, UTF-8, ``\\u2028`` / ``\\u2029`` escaped; date-times, decimals and the
    other types orjson does not encode the way DRF does go through DRF's own encoder (``encoder_class``).

    DRF's ``json.dumps`` renders what orjson refuses (integers beyond 64 bits, keys that are not strings) and
    everything indented (``Accept: application/json; indent=4``, the browsable API). One difference: a float that is
    not finite (the API stores none) is written ``null`` where DRF's strict JSON would fail the response.
    """

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent is None and self.compact and not self.ensure_ascii:
            try:
                content = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
            except (orjson.JSONEncodeError, TypeError):
                pass  # beyond what orjson encodes: DRF's encoder decides
            else:
                return content.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")
        return super().render(data, accepted_media_type, renderer_context)
