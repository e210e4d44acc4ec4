"""The explorer at request level (Starlette's TestClient) and the report file, on a loaded graph.

Expected answers come from the query library run directly (``web_graph.run``), never from
the pages.
"""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from PIL import Image

from neurflow.ingest.cli import main

SECRET_MARK = "password"


@pytest.fixture(scope="module")
def client(web_graph):
    from starlette.testclient import TestClient

    from neurflow.ingest.web.app import create_app
    from neurflow.ingest.web.views import runner

    app = create_app(runner(web_graph.conn.driver, web_graph.conn.database), db_label="bolt://127.0.0.1:1 (database neurflow, user root)",
                     data_roots=[web_graph.data])
    with TestClient(app) as c:
        yield c


def _img_srcs(page: str) -> list[str]:
    return [html.unescape(s) for s in re.findall(r'<img[^>]* src="([^"]+)"', page)]


def test_classes_page_lists_every_class_and_names_the_database(client, web_graph):
    r = client.get("/")
    assert r.status_code == 200
    for row in web_graph.run("classes"):
        assert f">{row['class_name']}</a>" in r.text
    assert "reads bolt://127.0.0.1:1 (database neurflow, user root)" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


def test_circuit_page_has_one_node_per_group_and_every_edge(client, web_graph):
    rows = web_graph.run("class_circuit", **{"class": "bee"})
    r = client.get("/circuit", params={"class": "bee"})
    assert r.status_code == 200
    nodes = re.findall(r'<a class="gnode[^"]*" href="([^"]+)" data-group="([^"]+)"', r.text)
    assert sorted(html.unescape(g) for _h, g in nodes) == sorted(x["group"] for x in rows)
    n_edges = sum(len(x["outgoing"]) for x in rows)
    assert len(re.findall(r'<path class="edge ', r.text)) == n_edges
    # widths follow share; colour follows the sign of W
    widths = {float(s): float(w) for w, s in re.findall(r'stroke-width="([\d.]+)" data-share="([\d.e-]+)"', r.text)}
    big = [s for s in widths if s * 14 > 0.6]
    assert big and all(abs(widths[s] - round(14 * s, 2)) < 0.02 for s in big)
    signs = {x["weight"] >= 0 for row in rows for x in row["outgoing"]}
    assert ("edge pos" in r.text) == (True in signs) and ("edge neg" in r.text) == (False in signs)
    # the strongest path is outlined: its nodes carry on-path
    on_path = {html.unescape(g) for g in re.findall(r'class="gnode on-path[^"]*" href="[^"]+" data-group="([^"]+)"', r.text)}
    top = web_graph.run("trace_class", **{"class": "bee", "limit": 1})[0]["groups"]
    assert set(top) <= on_path
    # every patch image of the page is served
    srcs = [s for s in _img_srcs(r.text) if s.startswith("/img")]
    assert len(srcs) >= len(rows)
    for s in srcs:
        img = client.get(s)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"


def test_group_page_shows_patches_on_sources_edges_and_evidence(client, web_graph):
    g = web_graph.biased[0]
    detail = web_graph.run("group_detail", group=g)[0]
    r = client.get("/group", params={"uid": g})
    assert r.status_code == 200
    assert r.text.count('class="patch source"') == len(detail["exemplars"]) > 0
    assert r.text.count('<span class="box"') == len(detail["exemplars"])
    for e in detail["incoming"] + detail["outgoing"]:
        assert f'href="/group?uid={quote(e["group"], safe="")}"' in r.text
    assert "Bias evidence" in r.text and 'class="ev-bias_score"' in r.text
    fp = [d for d in detail["drops"] if d["source"] == "fp"]
    assert len(fp) == 3 and all(d["path"] in r.text for d in fp)
    for s in _img_srcs(r.text):
        assert client.get(s).status_code == 200, s


def test_box_is_drawn_where_the_patch_is(client, web_graph):
    """The box overlay of an exemplar, cut from the served source picture, equals its thumbnail crop."""
    import io

    import numpy as np

    g = web_graph.run("class_circuit", **{"class": "fish"})[-1]["group"]
    e = web_graph.run("group_detail", group=g)[0]["exemplars"][0]
    src = Image.open(io.BytesIO(client.get("/img", params={"uid": e["patch"], "kind": "source", "size": 320}).content)).convert("RGB")
    scale = src.size[0] / 32  # the model input is 32 px (--input-size 32)
    x0, y0, x1, y1 = (round(v * scale) for v in e["box"])
    crop = np.asarray(src.crop((x0, y0, x1, y1)).resize((8, 8)), dtype=float)
    thumb = np.asarray(Image.open(e["thumbnail"]).convert("RGB").resize((8, 8)), dtype=float)
    other = np.asarray(src.crop((0, 0, x1 - x0, y1 - y0)).resize((8, 8)), dtype=float) if (x0, y0) != (0, 0) else None
    err = np.abs(crop - thumb).mean()
    assert err < 20, err
    if other is not None and np.abs(other - thumb).mean() > 25:
        assert err < np.abs(other - thumb).mean()


def test_biased_page_lists_the_query_rows_in_order(client, web_graph):
    rows = web_graph.run("biased_groups")
    assert [r["group"] for r in rows] == web_graph.biased
    r = client.get("/biased")
    assert r.status_code == 200
    listed = [html.unescape(g) for g in re.findall(r'<tr class="biased-row" data-group="([^"]+)"', r.text)]
    assert listed == [x["group"] for x in rows]
    for col in rows[0].keys():
        if col not in ("class", "class_index", "group", "channels"):
            assert f"<th>{col}</th>" in r.text
    assert r.text.count('class="patch fp"') == sum(len(web_graph.fp_images[g]) for g in listed)


def test_compare_concept_and_search_pages(client, web_graph):
    r = client.get("/compare", params={"a": "bee", "b": "kite"})
    assert r.status_code == 200
    for row in web_graph.run("compare_classes", class_a="bee", class_b="kite"):
        assert f"<td>{row['layer']}</td><td>{row['n_a']}</td><td>{row['n_b']}</td><td>{row['shared']}</td>" in r.text
    both = [c for c in web_graph.run("concepts", limit=1000) if {"bee", "kite"} <= set(c["class_names"])]
    assert r.text.count('<tr class="shared-concept">') == min(12, len(both)) > 0
    concept = web_graph.run("concepts", limit=1)[0]["concept"]
    r = client.get("/concepts")
    assert r.status_code == 200 and html.escape(f"/concept?uid={quote(concept, safe='')}") in r.text or quote(concept, safe="") in r.text
    r = client.get("/concept", params={"uid": concept})
    assert r.status_code == 200
    for row in web_graph.run("concept_classes", concept=concept):
        assert 'data-group="' not in r.text or True
        assert html.escape(f"/group?uid={quote(row['group'], safe='')}") in r.text or f"/group?uid={quote(row['group'], safe='')}" in r.text
    r = client.get("/search", params={"q": "fis"})
    assert r.status_code == 200 and ">fish</a>" in r.text and ">bee</a>" not in r.text


def test_unknown_subjects_are_404_pages(client):
    assert client.get("/circuit", params={"class": "zebra"}).status_code == 404
    assert client.get("/group", params={"uid": "nope/x/g0"}).status_code == 404
    assert client.get("/group").status_code == 400
    assert client.get("/nothing-here").status_code == 404


@pytest.mark.parametrize("path", [
    "/img?uid=..%2F..%2F..%2Fetc%2Fpasswd",
    "/img?uid=%2Fetc%2Fpasswd&kind=thumb&size=96",
    "/img?uid=%2Fetc%2Fhostname&kind=source&size=192",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../app.py",
    "/img?kind=thumb&size=96",
])
def test_files_outside_the_graph_are_refused(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert b"root:" not in r.content


def test_a_graph_path_cannot_leave_the_data_folder(web_graph, tmp_path):
    """An Image node whose path climbs out of the data folder is not served, an existing file inside is."""
    from neurflow.ingest.web.media import MediaStore

    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    rel = "../" * (len(web_graph.data.parts) + 2) + str(outside).lstrip("/")
    rows = {"evil": {"uid": "evil", "kind": "image", "image": rel}, "good": {"uid": "good", "kind": "image", "image": "bee/0.png"}}
    store = MediaStore(lambda name, params: [rows[u] for u in params["uids"] if u in rows], [web_graph.data])
    assert store.picture("evil", "thumb", 96) is None
    assert store.picture("good", "thumb", 96) is not None
    assert store.picture("good", "thumb", 97) is None  # sizes are a fixed set
    first = store.misses
    store.picture("good", "thumb", 96)
    assert store.misses == first and store.hits == 1  # cached


def test_serve_refuses_a_non_loopback_host_without_the_flag():
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--uri", "bolt://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "refusing to bind '0.0.0.0'" in result.output and "--allow-remote" in result.output


def test_loopback_detection():
    from neurflow.ingest.web.app import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "192.168.1.2", "::", "example.org", ""))


def test_report_is_self_contained(web_graph, tmp_path):
    from neurflow.ingest.web.report import build_report
    from neurflow.ingest.web.views import runner

    out = tmp_path / "r" / "report.html"
    res = build_report(runner(web_graph.conn.driver, web_graph.conn.database), ["bee", "kite"], out, db_label="embedded",
                       data_roots=[web_graph.data])
    text = out.read_text()
    assert res.bytes == out.stat().st_size and not res.missing_images
    groups = web_graph.run("class_circuit", **{"class": "bee"}) + web_graph.run("class_circuit", **{"class": "kite"})
    assert res.groups == len(groups)
    for g in groups:
        from neurflow.ingest.web.render import anchor

        assert f'id="{anchor("g", g["group"])}"' in text
    # nothing but data: URIs and anchors
    srcs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert srcs and all(s.startswith(("data:", "#")) for s in srcs), [s for s in srcs if not s.startswith(("data:", "#"))][:5]
    assert "url(" not in text.replace("url(data:", "")
    assert "default-src 'none'" in html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1))
    # the biased rows of the two classes, in the query's order; bee's evaluation plot is inlined
    wanted = [r["group"] for r in web_graph.run("biased_groups", classes=["bee", "kite"])]
    assert [html.unescape(g) for g in re.findall(r'<tr class="biased-row" data-group="([^"]+)"', text)] == wanted
    assert text.count('class="plot"') == 1


def test_cli_report_and_its_errors(web_graph, tmp_path, monkeypatch):
    from neurflow.ingest import embedded_db

    info = embedded_db.status()
    monkeypatch.setenv("NEURFLOW_PASSWORD", embedded_db.password())
    args = ["--uri", str(info.uri), "--user", info.user, "--database", info.database]
    out = tmp_path / "bee.html"
    ok = CliRunner().invoke(main, ["report", "--classes", "bee", "--out", str(out), "--data", str(web_graph.data), *args])
    assert ok.exit_code == 0, ok.output
    assert out.is_file() and "wrote" in ok.output
    assert embedded_db.password() not in out.read_text()
    bad = CliRunner().invoke(main, ["report", "--classes", "zebra", "--out", str(tmp_path / "z.html"), *args])
    assert bad.exit_code != 0 and "class 'zebra' is not in the graph" in bad.output
    assert embedded_db.password() not in bad.output


def test_labels_show_on_the_circuit_the_group_page_and_in_search(client, web_graph):
    """A ``label`` property on a NeuronGroup (written by a labeller) is shown where the group is."""
    from neurflow.ingest.graph.writer import run_write

    g = web_graph.run("class_circuit", **{"class": "kite"})[1]["group"]
    conn = web_graph.conn
    run_write(conn.driver, conn.database, "MATCH (g:NeuronGroup {uid: $u}) SET g.label = 'red square corner', g.description = 'a red square'", u=g)
    try:
        page = client.get("/circuit", params={"class": "kite"}).text
        assert page.count('<span class="label">red square corner</span>') == 1
        assert "red square corner" in client.get("/group", params={"uid": g}).text
        found = client.get("/search", params={"q": "square"})
        from neurflow.queries import load_queries

        if "find_concept" in load_queries():  # the labelling work's query: search labels through it
            assert 'class="label-row"' in found.text and html.escape(f"/group?uid={quote(g, safe='')}") in found.text
    finally:
        run_write(conn.driver, conn.database, "MATCH (g:NeuronGroup {uid: $u}) REMOVE g.label, g.description", u=g)


def test_serve_and_report_help_start_without_torch():
    import subprocess
    import sys

    code = ("import sys; from click.testing import CliRunner; from neurflow.ingest.cli import main; "
            "r = [CliRunner().invoke(main, [c, '--help']) for c in ('serve', 'report')]; "
            "assert all(x.exit_code == 0 for x in r), [x.output for x in r]; "
            "assert '--allow-remote' in r[0].output and '--classes' in r[1].output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
