#!/usr/bin/env python3
"""Render a report.html in headless Chromium and save a PNG screenshot outside the repository.

    python scripts/screenshot_report.py out/ppo-pendulum/report.html        # -> /tmp/report-ppo-pendulum.png
    python scripts/screenshot_report.py out/ppo-pendulum -o /tmp/shot.png   # a bundle dir works too

Needs Chromium (Debian: apt-get install chromium). It checks that the page renders
from the file alone: the browser runs without network services and a fresh profile.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def find_browser(explicit: str | None = None) -> str | None:
    """The Chromium executable: ``explicit``, or the first of BROWSERS on PATH."""
    if explicit:
        return shutil.which(explicit) or (explicit if Path(explicit).is_file() else None)
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, browser: str, window: str = "1280,2400", timeout: float = 120.0) -> Path:
    """Render ``html`` into ``png``; raises RuntimeError when Chromium fails or writes no PNG."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgekit-chromium-") as profile:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                   f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={window}",
                   html.resolve().as_uri()]
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if run.returncode != 0 or not png.is_file() or png.read_bytes()[:8] != PNG_SIGNATURE:
        raise RuntimeError(f"{Path(browser).name} wrote no screenshot (exit {run.returncode}): "
                           f"{run.stderr.strip()[-600:]}")
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("report", type=Path, help="a report.html, or a directory holding one")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="PNG to write (default: /tmp/report-<dir name>.png); must lie outside the repository")
    parser.add_argument("--window-size", default="1280,2400", help="W,H in CSS pixels (default: 1280,2400)")
    parser.add_argument("--browser", default=None,
                        help=f"Chromium executable (default: first of {', '.join(BROWSERS)})")
    args = parser.parse_args(argv)
    html = args.report / "report.html" if args.report.is_dir() else args.report
    if not html.is_file():
        print(f"error: {html} does not exist", file=sys.stderr)
        return 2
    png = (args.output or Path(tempfile.gettempdir()) / f"report-{html.resolve().parent.name}.png").resolve()
    if png.is_relative_to(REPO):
        print(f"error: {png} is inside the repository; keep screenshots out of it (e.g. under /tmp)", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    if browser is None:
        print("error: Chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        return 1
    try:
        screenshot(html, png, browser, args.window_size)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
