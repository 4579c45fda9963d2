"""The walk-through runner (`.ci/walkthroughs.py`, `make docs-test`) reads the manual's pages as documented: which
blocks run, which are files, which are left out and why, and which HTTP errors a page announces."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def walkthroughs():
    spec = importlib.util.spec_from_file_location("walkthroughs", ROOT / ".ci" / "walkthroughs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


PAGE = """# A page

```sh
TOKEN=$(cat token)
curl -s -X DELETE "$API/agents/$AGENT"   # 409 already_terminated
```

```python title="myagents/triage.py"
print("saved")  # 404 is not announced by a file
```

```python
print("only shown")
```

<!-- walkthrough: skip needs Node 22 -->
```bash
npx something
```

   ```sh
   echo indented  # 503 from an outage
   ```

```ini
SETTING=1
```
"""


def test_a_page_runs_its_shell_blocks_and_writes_its_file_blocks_in_order(walkthroughs, tmp_path):
    page_path = tmp_path / "page.md"
    page_path.write_text(PAGE)
    page = walkthroughs.read_page(page_path)
    assert len(page.blocks) == 3 and page.skipped == ["needs Node 22"]
    assert page.blocks[0].startswith("TOKEN=$(cat token)")
    assert page.blocks[1].startswith("mkdir -p 'myagents'\ncat > 'myagents/triage.py' <<'WALKTHROUGH_EOF'")
    assert page.blocks[2] == "echo indented  # 503 from an outage"
    assert page.announced == [409, 503]


@pytest.mark.parametrize("marker", ["<!-- walkthrough: skip -->", "<!-- walkthrough: skip-page -->"])
def test_leaving_out_a_block_or_a_page_needs_a_reason(walkthroughs, tmp_path, marker):
    page_path = tmp_path / "page.md"
    page_path.write_text(f"{marker}\n```sh\necho hi\n```\n")
    with pytest.raises(ValueError, match="must say why"):
        walkthroughs.read_page(page_path)


def test_a_file_block_stays_inside_the_checkout(walkthroughs, tmp_path):
    page_path = tmp_path / "page.md"
    page_path.write_text('```python title="../outside.py"\nx = 1\n```\n')
    with pytest.raises(ValueError, match="inside the checkout"):
        walkthroughs.read_page(page_path)


def test_every_page_of_the_manual_reads(walkthroughs):
    pages = [walkthroughs.read_page(path) for path in sorted((ROOT / "docs").rglob("*.md"))]
    assert sum(len(page.blocks) for page in pages) >= 15  # the walk-throughs CI runs
    assert all(reason for page in pages for reason in page.skipped)
