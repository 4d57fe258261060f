"""The HTML report as a user sees it: rendered by a real headless Chromium from disk,
with the network off. Runs where Debian's chromium is installed (apt-get install
chromium); elsewhere the structural checks in test_validate.py still apply."""
import shutil
import subprocess

import pytest

from conftest import FAST_BENCH, edgecnn

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(digits_artifacts, tmp_path):
    report = tmp_path / "report"
    assert edgecnn("validate", digits_artifacts, *FAST_BENCH, "--report", report).code == 0
    url = (report / "index.html").as_uri()
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") == 2 and "Accuracy against latency" in dom and "verdict-pass" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1300,1600", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    from PIL import Image
    with Image.open(shot) as img:
        assert img.size == (1300, 1600)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # charts and text drawn, not a blank page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.parametrize("width", [1100, 1400])
def test_report_fits_the_window(digits_artifacts, tmp_path, width):
    """Nothing makes the page wider than a 1,100 or 1,400 px window, and every table fits
    without scrolling (a table too wide for a narrower window scrolls in its own box).
    The page has no script of its own; the test adds one to a copy to read the widths."""
    report = tmp_path / "report"
    assert edgecnn("validate", digits_artifacts, *FAST_BENCH, "--report", report).code == 0
    page = (report / "index.html").read_text()
    probe = report / "probe.html"
    probe.write_text(page.replace("</body>", "<script>document.title = 'W' + document.documentElement.scrollWidth + "
                                              "'/' + Math.max(...Array.from(document.querySelectorAll('.table'), "
                                              "e => e.scrollWidth - e.clientWidth));</script></body>"))
    flags = [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},900"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    page_width, overflow = map(int, dom.split("<title>W", 1)[1].split("<", 1)[0].split("/"))
    assert page_width <= width and overflow == 0, (page_width, overflow, width)  # every table fits, unscrolled
