"""The leaderboard site, built and then rendered in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from report_runs import SCRIPT_OUTPUT, standard_run

from cli.main import main

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    runs = [standard_run(root / "nightly", adapter_prediction=SCRIPT_OUTPUT),
            standard_run(root / "candidate", "candidate", adapter_correct=20)]
    main(["leaderboard", *map(str, runs), "--out", str(root / "site")])
    return root / "site"


def _chromium(page: Path, profile: Path, *extra: str) -> str:
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--window-size=1280,900", *extra, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout


def test_site_has_index_run_pages_reports_and_markdown(site):
    assert (site / "index.html").exists() and (site / "LEADERBOARD.md").exists()
    for run in ("nightly", "candidate"):
        assert (site / "runs" / run / "index.html").exists() and (site / "runs" / run / "report.html").exists()
    markdown = (site / "LEADERBOARD.md").read_text()
    assert "| [nightly](runs/nightly/index.html) | manpages | adapter | 0.875 [" in markdown


@needs_chromium
def test_index_renders_a_sortable_table_in_a_browser(site, tmp_path):
    screenshot = tmp_path / "index.png"
    _chromium(site / "index.html", tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000
    dom = _chromium(site / "index.html", tmp_path / "profile-dom", "--dump-dom")
    assert '<table id="leaderboard" class="sortable">' in dom or '<table class="sortable" id="leaderboard">' in dom
    assert len(re.findall(r"<tr>", dom)) == 1 + 6  # header + (2 runs x 3 configurations)
    assert 'href="runs/nightly/index.html"' in dom


@needs_chromium
def test_model_output_with_script_shows_as_text_in_the_browser(site, tmp_path):
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    for page in (site / "runs" / "nightly" / "index.html", site / "runs" / "nightly" / "report.html"):
        dom = _chromium(page, tmp_path / f"profile-{page.name}", "--dump-dom")
        assert escaped in dom, page
        assert "<script" not in dom and "<img src=\"x\"" not in dom and "onerror" not in dom.replace(escaped, "")
    assert SCRIPT_OUTPUT in (site / "runs" / "nightly" / "index.html").read_text().replace("&lt;", "<").replace(
        "&gt;", ">")
