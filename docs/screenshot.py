"""Screenshot of the demo's results page for the documentation (Getting started).

Run after ``kinpath demo``::

    python docs/screenshot.py runs/demo/report/results.html docs/images/results-page.png

Renders the page in Debian's ``chromium`` through Playwright (the same browser the review
application's tests use) at 1366 px wide, the top 1,200 px.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(page_file: str, out: str) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1366, "height": 1200})
        page.goto(Path(page_file).resolve().as_uri())
        page.screenshot(path=out)
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
