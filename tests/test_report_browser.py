"""report.html in a real browser (headless Chromium, where installed): every figure is laid out with a
size and draws data, measured by the browser itself (getBoundingClientRect, getBBox)."""

import json
import re
import shutil
import subprocess

import pytest
from conftest import make_fake_claim
from test_cli import run_cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MEASURE = """<script>
const figures = [...document.querySelectorAll("figure > svg")].map((svg) => {
  const box = svg.getBoundingClientRect();
  const data = [...svg.querySelectorAll('g[id*="-data-"]')].map((g) => g.getBBox())
    .filter((b) => b.width > 0 || b.height > 0).length;
  const axes = svg.querySelectorAll('g[id*="-axes_"]').length;
  return {width: box.width, height: box.height, data: data, axes: axes};
});
document.body.setAttribute("data-figures", JSON.stringify(figures));
</script>"""


def _browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip(f"no headless browser found ({', '.join(BROWSERS)}); on Debian: apt-get install chromium")
    return found


def test_every_figure_of_the_html_report_renders_in_chromium(tmp_path, fake_claims):
    browser = _browser()
    fake_claims(make_fake_claim("fake", flaw="violated"), make_fake_claim("other"))
    run_cli("audit", "--claims", "fake,other", "--examples", 3, "--out", tmp_path / "audit")
    page = (tmp_path / "audit" / "report.html").read_text()
    expected = page.count("<figure>")
    assert expected >= 4  # per claim: measured vs allowed, and the series
    (tmp_path / "measured.html").write_text(page.replace("</body>", MEASURE + "</body>"))
    dumped = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                             "--dump-dom", (tmp_path / "measured.html").as_uri()],
                            capture_output=True, text=True, timeout=120)
    found = re.search(r'data-figures="([^"]*)"', dumped.stdout)
    assert found, dumped.stderr[-2000:]
    figures = json.loads(found[1].replace("&quot;", '"'))
    assert len(figures) == expected
    for figure in figures:
        assert figure["width"] > 300 and figure["height"] > 150, figure
        assert figure["axes"] >= 1 and figure["data"] >= figure["axes"], figure  # every panel draws data
