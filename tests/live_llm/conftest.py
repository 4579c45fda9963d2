"""The real-model test: collected only by ``make test-llm`` (which sets ``SYNDARIX_TEST_LLM=1``), never by
``make test`` or CI — it needs the local model server that ``make llm`` prepares (``scripts/llm.sh``), about
10-20 minutes of compiling once, and a minute or two of CPU per run.

``llama_server`` starts that server on a free port of 127.0.0.1 and stops it after the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
#: The name the server answers as (``--model_alias``) and the model the agents ask for.
MODEL = "gemma-3-270m"
#: Seconds the server gets to load the model and answer ``GET /v1/models``.
START_SECONDS = 120

if os.environ.get("SYNDARIX_TEST_LLM") != "1":
    collect_ignore_glob = ["test_*.py"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """``http://127.0.0.1:<port>/v1`` of a running llama-cpp-python server (``scripts/llm.sh serve``)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "llm.sh"), "serve", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "LLM_MODEL_ALIAS": MODEL}, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"The model server exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/models", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                log = log_path.read_text()[-3000:]
                pytest.fail(f"The model server did not answer within {START_SECONDS} s:\n{log}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
