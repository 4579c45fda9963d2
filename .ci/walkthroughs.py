"""`make docs-test`: run the manual's shell walk-throughs as typed, against a live `make run`.

Every fenced block of the manual (docs/**/*.md) whose language is ``sh`` or ``bash`` is a walk-through step; a block
right after the line ``<!-- walkthrough: skip REASON -->`` is left out (the reason is required: a block that cannot
run here, such as ``make test`` or a command that needs another service), and ``<!-- walkthrough: skip-page REASON
-->`` anywhere on a page leaves out all its blocks (production steps, say). A block of any language with a file name,
```` ```python title="myagents/triage.py" ````, is a file the reader saves: it is written to that path (relative to
the checkout) at its place in the page. The steps of one page run in order in one ``bash -euo pipefail``, as a reader
types the page top to bottom in one terminal, so a page must set every variable it uses; pages share nothing but the
server and the checkout.

The server is started as the docs say, ``make run``, in a scratch copy of the working tree (its tracked and
unignored files, the virtualenv linked), on a free port that replaces ``127.0.0.1:8000`` and ``localhost:8000`` in
the blocks; it is stopped with SIGINT, as Ctrl-C does.

Pages run two at a time (``--jobs``). A page fails when its shell fails (a command exits non-zero, an unset
variable) or when the HTTP errors its ``curl`` calls get differ from the ones it announces: a comment that starts
with a 4xx/5xx status (``# 409 version_conflict``) announces one, and the errors received must be exactly the
announced ones, in order. Every other answer must be 2xx or 3xx. (``curl`` is run through a shim that records the
status of each answer and changes nothing else.)

Exit status 0 when every page passes. ``--keep`` leaves the scratch copy (and its server log) for a look.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
SKIP = re.compile(r"<!--\s*walkthrough:\s*skip\b(?!-)(?P<reason>.*?)-->")
SKIP_PAGE = re.compile(r"<!--\s*walkthrough:\s*skip-page\b(?P<reason>.*?)-->", re.DOTALL)
TITLE = re.compile(r'\btitle="(?P<path>[^"]+)"')
SHELLS = {"sh", "bash"}
#: A comment that starts with an HTTP error status announces that error.
ANNOUNCED = re.compile(r"(?:^|\s)#\s*([45]\d\d)\b")
#: Variables of the caller's environment that would point the server elsewhere than `make run`'s defaults.
SERVER_ENV_DROPPED = re.compile(
    r"^(DATABASE_URL|REDIS_URL|CELERY_BROKER_URL|DJANGO_ENV_FILE|DJANGO_DEBUG|AGENT_LLM_.*|AI_SERVICES_.*|PORT)$"
)
CURL_SHIM = """#!/usr/bin/env bash
# curl as typed; records the HTTP status of the answer (the walk-through runner checks them).
headers=$(mktemp)
"$WALKTHROUGH_REAL_CURL" -D "$headers" "$@"; status=$?
code=$(sed -n 's/^HTTP\\/[0-9.]* \\([0-9][0-9][0-9]\\).*/\\1/p' "$headers" | tail -n 1)
command="$*"
printf '%s\\t%s\\n' "${code:-none}" "${command//$'\\n'/ }" >> "$WALKTHROUGH_STATUS_LOG"
rm -f "$headers"
exit $status
"""


@dataclass
class Page:
    """A page's steps (shell blocks and files to write, in order), the HTTP error statuses its shell blocks
    announce (in order), and the reasons of the blocks it leaves out."""

    path: Path
    blocks: list[str] = field(default_factory=list)
    announced: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_page(path: Path) -> Page:
    """The walk-through steps of a Markdown page; ``ValueError`` for a skip marker without a reason."""
    text = path.read_text()
    page = Page(path)
    if skip_page := SKIP_PAGE.search(text):
        if not skip_page["reason"].strip():
            raise ValueError(f"{path}: a skipped page must say why (<!-- walkthrough: skip-page REASON -->)")
        return page
    for match in FENCE.finditer(text):
        language = match["info"].strip().lstrip("{").lstrip(".").split()[0] if match["info"].strip() else ""
        if language not in SHELLS and not TITLE.search(match["info"]):
            continue
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        body = "\n".join(line[len(match["indent"]):] for line in match["body"].splitlines())
        title = TITLE.search(match["info"])
        if title and language not in SHELLS:
            target = Path(title["path"])
            if target.is_absolute() or ".." in target.parts:
                raise ValueError(f"{path}: a file block's title must be a path inside the checkout: {target}")
            page.blocks.append(
                f"mkdir -p '{target.parent}'\ncat > '{target}' <<'WALKTHROUGH_EOF'\n{body}\nWALKTHROUGH_EOF"
            )
            continue
        if skip:
            if not skip["reason"].strip():
                raise ValueError(f"{path}: a skipped block must say why (<!-- walkthrough: skip REASON -->)")
            page.skipped.append(skip["reason"].strip())
        else:
            page.blocks.append(body)
            page.announced += [int(code) for line in body.splitlines() for code in ANNOUNCED.findall(line)]
    return page


def scratch_copy(destination: Path) -> None:
    """Copy the working tree's tracked and unignored files to ``destination``, linking the virtualenv."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)  # keeps the times, so make sees the virtualenv as installed
    (destination / ".venv").symlink_to(ROOT / ".venv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Server:
    """``make run PORT=<port>`` in ``workdir``, stopped as Ctrl-C does."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.log = workdir / "make-run.log"
        env = {k: v for k, v in os.environ.items() if not SERVER_ENV_DROPPED.match(k)}
        self.started = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["make", "run", f"PORT={port}"], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> float:
        """Seconds until the admin's login page answers; ``RuntimeError`` when it does not within ``timeout``."""
        while not answers(f"http://127.0.0.1:{self.port}/admin/login/"):
            if self.process.poll() is not None or time.monotonic() - self.started > timeout:
                raise RuntimeError(f"make run did not answer on port {self.port}:\n{self.tail()}")
            time.sleep(0.2)
        return time.monotonic() - self.started

    def stop(self, timeout: float = 20.0) -> float:
        """SIGINT to make's process group (Ctrl-C); seconds until make and everything it started have exited."""
        began = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise RuntimeError(f"make run did not stop within {timeout:g} s after SIGINT") from None
        while answers(f"http://127.0.0.1:{self.port}/admin/login/"):
            if time.monotonic() - began > timeout:
                raise RuntimeError(f"the server on port {self.port} still answers after make run stopped")
            time.sleep(0.1)
        return time.monotonic() - began

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def run_page(page: Page, *, workdir: Path, port: int, shims: Path, timeout: float) -> tuple[bool, str, float]:
    """Run ``page``'s blocks in one bash; returns (passed, report, seconds)."""
    status_log = shims / f"{page.path.stem}-{time.monotonic_ns()}.status"
    status_log.touch()
    script = "\n".join(
        f"# --- block {n} of {page.path.relative_to(ROOT)}\n{block}" for n, block in enumerate(page.blocks, 1)
    )
    for host in ("127.0.0.1:8000", "localhost:8000"):
        script = script.replace(host, f"127.0.0.1:{port}")
    # The pages' commands run as in a shell with the checkout's virtualenv active (docs/development.md).
    env = {**os.environ, "PATH": f"{shims}:{workdir / '.venv' / 'bin'}:{os.environ['PATH']}",
           "WALKTHROUGH_STATUS_LOG": str(status_log),
           "WALKTHROUGH_REAL_CURL": shutil.which("curl") or "curl"}
    for name in ("DJANGO_ENV_FILE", "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-euo", "pipefail"], input=script, text=True, cwd=workdir, env=env,
            capture_output=True, timeout=timeout,
        )
        code, output = result.returncode, result.stdout + result.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = -1, f"timed out after {timeout:g} s\n{exc.stdout or ''}{exc.stderr or ''}"
    seconds = time.monotonic() - started
    requests = [line.split("\t", 1) for line in status_log.read_text().splitlines()]
    errors = [(int(code_), command) for code_, command in requests if code_.isdigit() and int(code_) >= 400]
    problems = []
    if code != 0:
        problems.append(f"the shell exited with status {code}")
    if [c for c, _ in errors] != page.announced:
        problems.append(
            f"HTTP errors received {[c for c, _ in errors]}, announced {page.announced}"
            + "".join(f"\n    {c} curl {command}" for c, command in errors)
        )
    if any(code_ == "none" for code_, _ in requests):
        problems.append("a curl call got no HTTP answer")
    summary = (f"{len(page.blocks)} block(s), {len(requests)} request(s), {len(errors)} HTTP error(s) as announced"
               + (f", {len(page.skipped)} skipped" if page.skipped else ""))
    if problems:
        return False, summary + "\n  " + "\n  ".join(problems) + "\n--- output (last 60 lines)\n" + "\n".join(
            output.splitlines()[-60:]), seconds
    return True, summary, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pages", nargs="*", type=Path, help="pages to run (default: every page of docs/)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and its server log")
    parser.add_argument("--page-timeout", type=float, default=180.0, help="seconds per page (default 180)")
    parser.add_argument("--jobs", type=int, default=2, help="pages run at once (default 2)")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.pages] or sorted((ROOT / "docs").rglob("*.md"))
    pages = [page for page in map(read_page, paths) if page.blocks]
    workdir = Path(tempfile.mkdtemp(prefix="syndarix-walkthroughs-"))
    shims = workdir / ".walkthrough-shims"
    shims.mkdir()
    (shims / "curl").write_text(CURL_SHIM)
    (shims / "curl").chmod(0o755)
    scratch_copy(workdir)
    port = free_port()
    server = Server(workdir, port)
    failed = 0
    try:
        ready = server.wait_ready(timeout=300)
        print(f"make run answered on port {port} after {ready:.1f} s ({workdir})", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            runs = {pool.submit(run_page, page, workdir=workdir, port=port, shims=shims, timeout=args.page_timeout):
                    page for page in pages}
            for done in concurrent.futures.as_completed(runs):
                passed, report, seconds = done.result()
                failed += not passed
                print(f"{'ok  ' if passed else 'FAIL'} {runs[done].path.relative_to(ROOT)} ({seconds:.1f} s): {report}",
                      flush=True)
    finally:
        try:
            print(f"make run stopped {server.stop():.1f} s after SIGINT")
        except RuntimeError as exc:
            failed += 1
            print(f"FAIL {exc}")
        if failed:
            print("--- make run's log (last 40 lines)\n" + server.tail())
        if args.keep or failed:
            print(f"Scratch copy kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"{len(pages) - min(failed, len(pages))} of {len(pages)} page(s) passed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
