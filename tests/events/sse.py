"""A small Server-Sent Events client on ``http.client`` (the tests' and the stream benchmark's), reading frames as
they arrive."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Frame:
    """One SSE frame: ``id`` (``None`` when it had none), ``event``, ``data`` (parsed JSON), ``comment`` (a comment
    line's text, for ``: keep-alive``) and ``at`` (``time.monotonic()`` of its arrival)."""

    id: str | None = None
    event: str | None = None
    data: Any = None
    comment: str | None = None
    at: float = field(default_factory=time.monotonic)


class Stream:
    """``GET path`` on ``127.0.0.1:port`` with ``Accept: text/event-stream``; iterate for frames."""

    def __init__(self, port: int, path: str, *, token: str | None = None, headers: dict[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        all_headers = {"Accept": "text/event-stream", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Token {token}"
        self.conn.request("GET", path, headers=all_headers)
        self.response = self.conn.getresponse()
        self.status = self.response.status
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}

    def body(self) -> Any:
        """The (JSON) body of a refused request."""
        raw = self.response.read()
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def __iter__(self):
        current = Frame()
        while True:
            line = self.response.readline()
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            if text == "":
                if current.event is not None or current.comment is not None:
                    current.at = time.monotonic()
                    yield current
                current = Frame()
            elif text.startswith(":"):
                current.comment = text[1:].strip()
            else:
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    current.id = value
                elif name == "event":
                    current.event = value
                elif name == "data":
                    current.data = json.loads(value)

    def events(self):
        """The frames that are events (comments skipped)."""
        return (frame for frame in self if frame.event is not None)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
