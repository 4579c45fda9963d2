"""Per operation of the API schema: how many cases `make fuzz` sent and how many were answered 2xx, read from
schemathesis's HAR report. Usage: `python .ci/fuzz_report.py <schema.json> <report.har>`.

Prints one line per operation (cases sent, answered 2xx, answered 404) and exits 1 when an operation was sent cases
and answered nothing but 404: the fuzzer never got past its ids. Operations never answered 2xx are listed too (a
login needs real credentials: 400); operations left out of the run show no cases.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

METHODS = ("get", "post", "put", "patch", "delete")


def main(schema_path: str, har_path: str) -> int:
    schema = json.loads(Path(schema_path).read_text())
    operations = []  # (method, template, regex)
    for template, item in schema["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        operations += [(method.upper(), template, pattern) for method in METHODS if method in item]
    # Templates without parameters first, then the most specific: a literal segment wins over a parameter.
    operations.sort(key=lambda op: (op[1].count("{"), -len(op[1])))
    sent, ok, missing, statuses = Counter(), Counter(), Counter(), {}
    for entry in json.loads(Path(har_path).read_text())["log"]["entries"]:
        method, path = entry["request"]["method"], urlsplit(entry["request"]["url"]).path
        match = next(((m, t) for m, t, p in operations if m == method and p.match(path)), None)
        if match is None:
            continue
        status = entry["response"]["status"]
        sent[match] += 1
        ok[match] += 200 <= status < 300
        missing[match] += status == 404
        statuses.setdefault(match, Counter())[status] += 1
    only_404, never_2xx = [], []
    print(f"{'cases':>6} {'2xx':>6} {'404':>6}  operation")
    for method, template, _ in sorted(operations, key=lambda op: (op[1], op[0])):
        key = (method, template)
        print(f"{sent[key]:>6} {ok[key]:>6} {missing[key]:>6}  {method} {template}")
        if sent[key] and not ok[key]:
            answers = ", ".join(f"{status} × {n}" for status, n in sorted(statuses[key].items()))
            (only_404 if missing[key] == sent[key] else never_2xx).append(f"{method} {template} ({answers})")
    if never_2xx:
        print(f"\nNever answered 2xx, but reached ({len(never_2xx)}): " + "; ".join(never_2xx))
    if only_404:
        print(f"\nAnswered nothing but 404 ({len(only_404)}): " + "; ".join(only_404))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
