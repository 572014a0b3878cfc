"""Open an HTML file in headless Chromium (selenium) and read back what a reader would see.

Used by tests/test_report_browser.py and benchmarks/report_example.py (the README's
screenshot). The browser is Debian's ``chromium`` with ``chromium-driver`` (``.ci/run``
installs them in CI); :func:`find_browser` says why not when they are absent.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian (and most Linux distributions) put the browser and its driver.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
#: Width of the window the page is laid out in (a laptop screen).
WIDTH = 1200

#: For every <img> and inline <svg>: decoded and drawn with a size?
_PICTURES_JS = """
const out = [];
for (const img of document.images) {
  let decoded = img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
  out.push({kind: 'img', alt: img.alt || '', decoded: decoded,
            width: img.naturalWidth, height: img.naturalHeight,
            src: img.currentSrc.slice(0, 40)});
}
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  out.push({kind: 'svg', alt: svg.getAttribute('aria-label') || '',
            decoded: box.width > 0 && box.height > 0, width: box.width, height: box.height,
            src: ''});
}
return out;
"""


@dataclass
class Rendered:
    """What the browser made of a page."""

    title: str
    text: str
    headings: list[str]
    console: list[dict[str, Any]]
    pictures: list[dict[str, Any]]
    height: int
    screenshot: Path | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def find_browser() -> tuple[str, str] | str:
    """``(browser, driver)`` paths, or why they cannot be used."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    if browser is None:
        return f"no Chromium found (looked for {', '.join(BROWSERS)}); apt-get install chromium"
    if driver is None:
        return "no chromedriver found; apt-get install chromium-driver"
    return browser, driver


def render(page: Path, screenshot: Path | None = None) -> Rendered:
    """Load ``page`` in headless Chromium; optionally save a full-page PNG screenshot."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    found = find_browser()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver_path = found
    with tempfile.TemporaryDirectory(prefix="steadyclf-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},900",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(driver_path))
        try:
            driver.set_page_load_timeout(60)
            driver.get(page.resolve().as_uri())
            # Every <img> decoded (or failed) before we look.
            driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "Promise.all(Array.from(document.images).map("
                "  i => i.decode().catch(() => null))).then(() => done(true));"
            )
            pictures = driver.execute_script(_PICTURES_JS)
            headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "h1, h2, h3")]
            # Collapsed <details> count as text too: a reader opens them.
            text = driver.execute_script("return document.body.textContent")
            height = int(driver.execute_script("return document.documentElement.scrollHeight"))
            shot = None
            if screenshot is not None:
                driver.set_window_size(WIDTH, height + 200)
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
                shot = screenshot
            console = driver.get_log("browser")
            return Rendered(
                title=driver.title,
                text=text,
                headings=headings,
                console=console,
                pictures=pictures,
                height=height,
                screenshot=shot,
                errors=[e for e in console if e.get("level") == "SEVERE"],
            )
        finally:
            driver.quit()
