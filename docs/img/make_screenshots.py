"""Take the README's screenshots of a running explorer (headless Chromium via Selenium).

    make demo
    .venv/bin/neurflow serve --data .neurflow/demo/world/val &
    .venv/bin/python docs/img/make_screenshots.py http://127.0.0.1:8765 bee

Writes docs/img/circuit.png (the class's concept circuit) and docs/img/group.png (its most
highest bias score, or the first group of its strongest path), as 8-bit palette PNGs.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from urllib.parse import quote

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

OUT = Path(__file__).resolve().parent


def shot(driver, url: str, name: str, width: int = 1280, height: int | None = None) -> None:
    driver.set_window_size(width, 900)
    driver.get(url)
    time.sleep(1.0)
    h = height or min(driver.execute_script("return document.documentElement.scrollHeight"), 1800)
    driver.set_window_size(width, h)
    time.sleep(0.5)
    im = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    im.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
    print(f"{name}: {im.size[0]}x{im.size[1]}, {(OUT / name).stat().st_size / 1024:.0f} KiB")


def main(base: str, cls: str) -> None:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        driver.get(f"{base}/circuit?class={quote(cls)}")
        scored = [(float(n.get_attribute("data-bias")), n.get_attribute("data-group")) for n in driver.find_elements("css selector", "a.gnode[data-bias]")]
        biased = [g for _s, g in sorted(scored, reverse=True)]
        on_path = [n.get_attribute("data-group") for n in driver.find_elements("css selector", "a.gnode.on-path")]
        group = (biased or on_path)[0]
        shot(driver, f"{base}/circuit?class={quote(cls)}", "circuit.png", height=1240)
        shot(driver, f"{base}/group?uid={quote(group, safe='')}", "group.png", height=1100)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765", sys.argv[2] if len(sys.argv) > 2 else "bee")
