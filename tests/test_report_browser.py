"""report.html in a real headless browser: Chromium renders it from the file alone."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "screenshot_report.py"
_spec = importlib.util.spec_from_file_location("screenshot_report", SCRIPT)
screenshot_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot_report)

pytestmark = pytest.mark.skipif(screenshot_report.find_browser() is None,
                                reason="Chromium is not installed (apt-get install chromium)")


def test_report_renders_in_headless_chromium(built_bundle, tmp_path):
    from edgekit.report.build_report import write_report
    from edgekit.report.thresholds import Thresholds

    built = built_bundle("ppo-pendulum")
    result = write_report(built.bundle_dir, built.model_path, None, 1, 0, Thresholds(), tmp_path / "report")
    png = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(result.html_path), "-o", str(png)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data[:8] == screenshot_report.PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 2400)
    assert len(data) > 60_000  # a blank page of that size compresses to ~14 KB; the report's plots do not


def test_screenshots_stay_out_of_the_repository(tmp_path):
    html = tmp_path / "report.html"
    html.write_text("<!DOCTYPE html><p>x</p>", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(html), "-o", str(REPO / "shot.png")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "inside the repository" in proc.stderr
    assert not (REPO / "shot.png").exists()
