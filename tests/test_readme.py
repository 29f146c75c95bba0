"""Every Python example in README.md and docs/*.md runs as written, in order within its file (the
documentation stays true)."""

import pathlib
import re

import pytest

from theorycheck.harness import battery
from theorycheck.core import kit, registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = {path.relative_to(ROOT).as_posix(): re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
            for path in DOCUMENTS}


@pytest.mark.parametrize("document", [name for name, found in EXAMPLES.items() if found])
def test_documented_examples_run_in_order(document):
    """One test per document, so that an example using a claim declared by an earlier one runs after it on
    the same worker; the claims they declare are removed afterwards, so other tests see the built-in registry."""
    assert registry.CLAIMS  # the built-in claims are registered first: they are not the examples' to remove
    before = (set(registry._CLAIMS), set(kit.KITS), set(battery.BATTERY_CHECKS))
    try:
        for number, code in enumerate(EXAMPLES[document], 1):
            try:
                exec(compile(code, f"{document}: example {number}", "exec"), {"__name__": "readme_example"})
            except Exception as error:
                raise AssertionError(f"{document} example {number} failed: {error!r}\n{code}") from error
    finally:
        for table, known in zip((registry._CLAIMS, kit.KITS, battery.BATTERY_CHECKS), before):
            for key in set(table) - known:
                del table[key]
