"""An OpenAI-compatible chat-completions stub with a fixed delay, served by uvicorn (an ASGI app, asyncio):
thousands of concurrent calls cost it almost nothing, so it is never the bottleneck of a fleet benchmark.

Each agent of the fleet benchmark makes ``TOOL_TURNS + 1`` calls: the first ``TOOL_TURNS`` answers ask for the
read tool ``TOOL`` (the stub counts the assistant turns already in the conversation), the last one answers. A user
message holding ``[turns=N]`` asks for N tool turns instead.

Control (JSON): ``POST /control/outage {"seconds": 20, "status": 503}`` answers every call with that status for
the next ``seconds`` (with ``Retry-After: 1``); ``GET /control/stats`` returns ``{"calls", "errors", "in_flight"}``.

Run: ``python benchmarks/fleet_stub.py --port 8399 --delay 3`` (the benchmark starts it itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
import uuid

TOOL = "read_context"
TOOL_TURNS = 3


class Stub:
    """The ASGI app (see the module docstring)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.outage_until = 0.0
        self.outage_status = 503
        self.calls = self.errors = self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"].rstrip("/")
        if path == "/control/outage":
            order = json.loads(body or b"{}")
            self.outage_until = time.monotonic() + float(order.get("seconds", 0))
            self.outage_status = int(order.get("status", 503))
            return await _answer(send, 200, {"ok": True})
        if path == "/control/stats":
            return await _answer(send, 200, {"calls": self.calls, "errors": self.errors, "in_flight": self.in_flight})
        if path != "/v1/chat/completions":
            return await _answer(send, 404, {"error": {"message": "no such endpoint"}})
        self.calls += 1
        if time.monotonic() < self.outage_until:
            self.errors += 1
            return await _answer(send, self.outage_status, {"error": {"message": "stub outage"}},
                                 headers=[(b"retry-after", b"1")])
        self.in_flight += 1
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        request = json.loads(body)
        turns = sum(1 for m in request.get("messages", []) if m.get("role") == "assistant")
        asked = re.search(r"\[turns=(\d+)\]", " ".join(str(m.get("content")) for m in request.get("messages", [])
                                                      if m.get("role") == "user"))
        offered = any(t["function"]["name"] == TOOL for t in request.get("tools", []))
        if turns < (int(asked.group(1)) if asked else TOOL_TURNS) and offered:
            arguments = json.dumps({"name": "notes"})
            call = {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                    "function": {"name": TOOL, "arguments": arguments}}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        else:
            message = {"role": "assistant", "content": f"Done after {turns} tool calls."}
        await _answer(send, 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model") or "stub",
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if message.get("tool_calls") else "stop"}],
            "usage": {"prompt_tokens": 200 + 50 * turns, "completion_tokens": 20, "total_tokens": 220 + 50 * turns},
        })


async def _answer(send, status: int, payload: dict, headers: list | None = None) -> None:
    raw = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": raw})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=3.0, help="seconds before each answer")
    args = parser.parse_args()
    uvicorn.run(Stub(args.delay), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                backlog=4096, timeout_keep_alive=120)


if __name__ == "__main__":
    main()
