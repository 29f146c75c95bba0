"""Every Python example in README.md runs as written, in order (the README stays true)."""

import pathlib
import re

from theorycheck.harness import battery
from theorycheck.core import kit, registry

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_examples_run_in_order():
    """One test, so that an example using a claim declared by an earlier one runs after it on the same
    worker; the claims they declare are removed afterwards, so other tests see the built-in registry."""
    before = (set(registry._CLAIMS), set(kit.KITS), set(battery.BATTERY_CHECKS))
    try:
        for number, code in enumerate(EXAMPLES, 1):
            try:
                exec(compile(code, f"{README}: example {number}", "exec"), {"__name__": "readme_example"})
            except Exception as error:
                raise AssertionError(f"README example {number} failed: {error!r}\n{code}") from error
    finally:
        for table, known in zip((registry._CLAIMS, kit.KITS, battery.BATTERY_CHECKS), before):
            for key in set(table) - known:
                del table[key]
