"""What a person sees: headless Chromium (Debian's chromium + chromium-driver, via Selenium)
against a running ``neurflow serve`` and against a ``neurflow report`` file opened from disk.

Each page must load with no console error and no failed request; images must have
decoded (naturalWidth > 0). Screenshots of every page go to ``$NEURFLOW_SCREENSHOTS``
(default ``.neurflow/screenshots/``). Without Chromium these tests skip, except under
``CI=true``, where they fail: CI installs it (``make test`` runs ``make browser``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else shutil.which("chromedriver")
SHOTS = Path(os.environ.get("NEURFLOW_SCREENSHOTS", REPO / ".neurflow" / "screenshots"))


def _require_browser() -> None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if not missing:
        return
    why = f"{', '.join(missing)} not installed: run `make browser` (apt-get install chromium chromium-driver) and `pip install -e '.[test]'`"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI must run the browser tests: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(web_graph):
    """``neurflow serve`` in its own process on the test graph; yields its base URL."""
    _require_browser()
    from neurflow.ingest import embedded_db

    info = embedded_db.status()
    port = _free_port()
    env = {**os.environ, "NEURFLOW_PASSWORD": embedded_db.password()}
    cmd = [sys.executable, "-m", "neurflow.ingest.cli", "serve", "--port", str(port), "--uri", str(info.uri), "--user", info.user,
           "--database", info.database, "--data", str(web_graph.data)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    out = proc.stdout.read() if proc.poll() is not None else ""
                    pytest.fail(f"neurflow serve did not answer: {out}")
                time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _drain(driver) -> None:
    driver.get_log("browser")
    driver.get_log("performance")


def _logs(driver) -> tuple[list[str], list[str]]:
    """(console errors and failed requests, URLs requested) since the last call."""
    bad = [f"console {e['level']}: {e['message']}" for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.loadingFailed":
            bad.append(f"request failed: {msg['params'].get('errorText')} {msg['params'].get('blockedReason') or ''}")
        elif msg["method"] == "Network.responseReceived":
            resp = msg["params"]["response"]
            if resp.get("status", 200) >= 400:
                bad.append(f"HTTP {resp['status']}: {resp['url']}")
        elif msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return bad, urls


def _problems(driver) -> list[str]:
    return _logs(driver)[0]


def _load(driver, url: str) -> float:
    t0 = time.perf_counter()
    driver.get(url)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete)"))
    return time.perf_counter() - t0


def _broken_images(driver, scope: str = "document") -> list[str]:
    return driver.execute_script(
        f"return Array.from({scope}.querySelectorAll('img')).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 120))")


def _shot(driver, name: str, full: bool = True) -> Path:
    path = SHOTS / f"{name}.png"
    if full:
        w, h = driver.execute_script("return [Math.max(document.documentElement.scrollWidth, 1000), "
                                     "Math.min(document.documentElement.scrollHeight, 4000)]")
        driver.set_window_size(max(1400, w + 20), max(1000, h + 120))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    assert path.stat().st_size > 1000
    return path


def test_classes_page(browser, server, web_graph):
    _drain(browser)
    _load(browser, server + "/")
    assert _problems(browser) == []
    names = [e.text for e in browser.find_elements("css selector", "tr.class-row td:nth-child(2) a")]
    assert sorted(names) == sorted(r["class_name"] for r in web_graph.run("classes"))
    assert "reads bolt://127.0.0.1:" in browser.find_element("id", "db-source").text
    from neurflow.ingest import embedded_db

    assert embedded_db.password() not in browser.page_source
    # the filter box hides the other classes
    browser.find_element("id", "class-filter").send_keys("kite")
    visible = [r for r in browser.find_elements("css selector", "tr.class-row") if r.is_displayed()]
    assert [r.find_element("css selector", "td:nth-child(2)").text for r in visible] == ["kite"]
    _shot(browser, "serve-classes")


def test_bee_circuit_shows_every_group_with_loaded_patches_and_opens_a_group(browser, server, web_graph):
    _drain(browser)
    seconds = _load(browser, server + "/circuit?class=bee")
    assert _problems(browser) == []
    expected = {r["group"] for r in web_graph.run("class_circuit", **{"class": "bee"})}
    nodes = browser.find_elements("css selector", ".circuit a.gnode")
    assert len(nodes) == len(expected) and {n.get_attribute("data-group") for n in nodes} == expected
    for n in nodes:
        imgs = n.find_elements("css selector", "img.patch")
        assert imgs, n.get_attribute("data-group")
        assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in imgs)
    assert _broken_images(browser) == []
    _shot(browser, "serve-circuit-bee")
    print(f"bee circuit page: {seconds:.2f} s")
    target = nodes[-1].get_attribute("data-group")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", nodes[-1])
    nodes[-1].click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda d: "/group?" in d.current_url)
    _load(browser, browser.current_url)
    assert target in browser.find_element("css selector", "main").text
    assert _problems(browser) == []
    assert _broken_images(browser) == []
    assert browser.find_elements("css selector", ".exemplar .frame .box")
    _shot(browser, "serve-group")


def test_group_page_of_a_biased_group(browser, server, web_graph):
    g = web_graph.biased[0]
    _drain(browser)
    from urllib.parse import quote

    _load(browser, server + "/group?uid=" + quote(g, safe=""))
    assert _problems(browser) == []
    assert _broken_images(browser) == []
    fps = browser.find_elements("css selector", ".drops-fp img")
    assert len(fps) == len(web_graph.fp_images[g])
    assert browser.find_element("css selector", "tr.ev-bias_score td").text == "0.61"
    _shot(browser, "serve-group-biased")


def test_biased_page_lists_the_query_in_order(browser, server, web_graph):
    _drain(browser)
    _load(browser, server + "/biased")
    assert _problems(browser) == []
    assert _broken_images(browser) == []
    rows = browser.find_elements("css selector", "tr.biased-row")
    assert [r.get_attribute("data-group") for r in rows] == [r["group"] for r in web_graph.run("biased_groups")]
    _shot(browser, "serve-biased")


def test_compare_and_concept_pages(browser, server, web_graph):
    for name, path in (("serve-compare", "/compare?a=bee&b=kite"), ("serve-concepts", "/concepts")):
        _drain(browser)
        _load(browser, server + path)
        assert _problems(browser) == [], path
        assert _broken_images(browser) == [], path
        _shot(browser, name)
    link = browser.find_element("css selector", "table.concepts a")
    link.click()
    _load(browser, browser.current_url)
    assert "/concept?uid=" in browser.current_url
    assert _problems(browser) == []
    assert browser.find_elements("css selector", "section.concept-class img.patch")
    _shot(browser, "serve-concept")


def test_report_from_disk_offline(browser, web_graph, tmp_path):
    from neurflow.ingest.web.report import build_report
    from neurflow.ingest.web.views import runner

    out = tmp_path / "report.html"
    build_report(runner(web_graph.conn.driver, web_graph.conn.database), ["bee", "kite"], out, db_label="test graph", data_roots=[web_graph.data])
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    try:
        _drain(browser)
        _load(browser, out.as_uri())
        problems, urls = _logs(browser)
        assert problems == []
        assert urls and all(u.startswith(("file:", "data:")) for u in urls), [u for u in urls if not u.startswith(("file:", "data:"))]
        n_images = browser.execute_script("return document.images.length")
        assert n_images > 0 and _broken_images(browser) == []
        _shot(browser, "report-home")
        browser.find_element("css selector", "nav.toc a:nth-child(2)").click()
        nodes = [n for n in browser.find_elements("css selector", "section.view:target a.gnode")]
        assert len(nodes) == len(web_graph.run("class_circuit", **{"class": "bee"}))
        _shot(browser, "report-circuit-bee")
        target = nodes[0].get_attribute("data-group")
        nodes[0].click()
        section = browser.find_element("css selector", "section.view:target")
        assert target in section.text and section.find_elements("css selector", "img.patch")
        assert _broken_images(browser, "document.querySelector('section.view:target')") == []
        _shot(browser, "report-group")
        assert _problems(browser) == []
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})


def test_paper_depth_circuit_is_readable_in_the_browser(browser, server, web_graph):
    """A synthetic circuit of paper depth (logit + 10 layers of 10 groups) written to the graph:
    every group is drawn, no two overlap on screen, every edge is there."""
    from neurflow.ingest.graph.writer import run_write

    from .test_layout import synthetic

    groups = synthetic(11, 10, seed=5, fan_in=5)
    model, cls = "paperdepth@000000000000", "paperdepth@000000000000/c7"
    rows = [{"uid": f"{cls}/{g['group']}", "layer": g["layer"], "index": g["index"], "depth": g["depth"],
             "out": [{"to": f"{cls}/{e['group']}", "share": e["share"], "weight": e["weight"]} for e in g["outgoing"]]} for g in groups]
    conn = web_graph.conn
    run_write(conn.driver, conn.database, "MERGE (m:Model {uid: $m}) SET m.name = 'paperdepth' "
              "MERGE (c:Class {uid: $c}) SET c.name = 'deep', c.index = 7, c.model = $m, c.layers = $layers, c.complete = true "
              "MERGE (c)-[:OF_MODEL]->(m)", m=model, c=cls, layers=[f"L{d}" for d in range(11)])
    run_write(conn.driver, conn.database, "UNWIND $rows AS r MATCH (c:Class {uid: $c}) "
              "CREATE (g:NeuronGroup {uid: r.uid, class: $c, model: $m, layer: r.layer, index: r.index, depth: r.depth, root: r.depth = 0, "
              "n_neurons: 3, channels: [1, 2, 3]}) CREATE (c)-[:HAS_GROUP]->(g)", rows=rows, c=cls, m=model)
    run_write(conn.driver, conn.database, "MATCH (c:Class {uid: $c})-[:HAS_GROUP]->(g:NeuronGroup {depth: 0}) CREATE (c)-[:ROOT]->(g)", c=cls)
    run_write(conn.driver, conn.database, "UNWIND $rows AS r UNWIND r.out AS e MATCH (a:NeuronGroup {uid: r.uid}) MATCH (b:NeuronGroup {uid: e.to}) "
              "CREATE (a)-[:FLOWS_TO {share: e.share, weight: e.weight, abs_weight: abs(e.weight)}]->(b)", rows=rows)
    try:
        _drain(browser)
        seconds = _load(browser, server + "/circuit?class=" + cls.replace("@", "%40").replace("/", "%2F"))
        assert _problems(browser) == []
        rects = browser.execute_script(
            "return Array.from(document.querySelectorAll('.circuit a.gnode')).map(n => {const r = n.getBoundingClientRect(); "
            "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]})")
        assert len(rects) == 101
        for (ax, ay, aw, ah), (bx, by, bw, bh) in itertools.combinations(rects, 2):
            assert ax + aw <= bx + 0.5 or bx + bw <= ax + 0.5 or ay + ah <= by + 0.5 or by + bh <= ay + 0.5
        assert len(browser.find_elements("css selector", ".circuit path.edge")) == sum(len(r["out"]) for r in rows)
        assert len(browser.find_elements("css selector", ".circuit a.gnode.on-path")) == len({u for p in browser.find_elements(
            "css selector", "ol.paths li") for u in p.text.split(" ", 1)[1].split(" → ")})
        _shot(browser, "serve-circuit-paper-depth")
        print(f"paper-depth circuit page: {seconds:.2f} s")
    finally:
        run_write(conn.driver, conn.database, "MATCH (n) WHERE n.uid IN [$m, $c] OR n.class = $c DETACH DELETE n", m=model, c=cls)
