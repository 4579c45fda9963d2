"""Per operation of the API schema: how many cases `make fuzz` sent and how many were answered 2xx, read from
schemathesis's HAR report. Usage: `python .ci/fuzz_report.py <schema.json> <report.har>`.

Prints one line per operation and exits 1 when an operation with ids in its path was sent cases but never answered
2xx: the fuzzer never got past the ids (only 404s). Others that were never answered 2xx are listed (a login needs
real credentials: 400); operations left out of the run show no cases.
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
    sent, ok = Counter(), Counter()
    for entry in json.loads(Path(har_path).read_text())["log"]["entries"]:
        method, path = entry["request"]["method"], urlsplit(entry["request"]["url"]).path
        match = next(((m, t) for m, t, p in operations if m == method and p.match(path)), None)
        if match is None:
            continue
        sent[match] += 1
        if 200 <= entry["response"]["status"] < 300:
            ok[match] += 1
    unreached, refused = [], []
    print(f"{'cases':>6} {'2xx':>6}  operation")
    for method, template, _ in sorted(operations, key=lambda op: (op[1], op[0])):
        key = (method, template)
        print(f"{sent[key]:>6} {ok[key]:>6}  {method} {template}")
        if sent[key] and not ok[key]:
            (unreached if "{" in template else refused).append(f"{method} {template}")
    if refused:
        print(f"\nNever answered 2xx, no ids in the path ({len(refused)}): " + "; ".join(refused))
    if unreached:
        print(f"\nNever answered 2xx, ids in the path ({len(unreached)}): " + "; ".join(unreached))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
