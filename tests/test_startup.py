"""`theorycheck --help` and the pytest plugin start without importing torch (lazy public names)."""

import subprocess
import sys

PROBE = """import sys, time
start = time.perf_counter()
import theorycheck.harness.cli, theorycheck.harness.plugin
code = theorycheck.harness.cli.main(["--help"])
print(code, time.perf_counter() - start, sorted(m for m in ("torch", "numpy", "theorycheck.claims") if m in sys.modules))
"""


def test_help_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    code, seconds, heavy = out.splitlines()[-1].split(" ", 2)
    assert code == "0" and heavy == "[]", out


def test_public_names_and_claims_load_on_first_use():
    probe = ("import sys, theorycheck as tc; assert 'torch' not in sys.modules; "
             "from theorycheck.core.registry import CLAIMS; print(len(CLAIMS) > 0, tc.check_homogeneity.__module__, "
             "tc.core.devices.__name__, 'check_kkt' in dir(tc))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "theorycheck.claims.homogeneity", "theorycheck.core.devices", "True"]
