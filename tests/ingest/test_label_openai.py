"""The ``openai`` labeller end to end against a local server that speaks the chat-completions
protocol (pytest-httpserver): answers land in the graph; malformed JSON, 429 then success, a
500, a timeout and a missing key give their documented behaviour; the request carries the
image grid and the documented prompt; the key never appears in output, files or logs; the
cache prevents a second request; --max-requests and --dry-run."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from pathlib import Path

import pytest
from PIL import Image
from werkzeug.wrappers import Response

from neurflow.ingest.labelling import (
    LABELS_FILE,
    PROMPT_VERSION,
    LabellerError,
    OpenAILabeller,
    label_classes,
    read_class_labels,
    read_labels,
)
from neurflow.ingest.labelling.openai import DESCRIBE_PROMPT, SYSTEM_PROMPT

KEY_ENV = "NF_TEST_LABEL_KEY"
KEY = "sk-test-5ecret-never-shown-0123456789"
MODEL = "fake-vision"


class FakeVisionServer:
    """A chat-completions endpoint that answers like a vision model, and records requests.

    ``plan`` is a list of what to do with the next requests ('ok', 'malformed', 429, 500,
    'slow', 'echo-401'); when it is empty every request is answered 'ok'."""

    def __init__(self, httpserver) -> None:
        self.httpserver = httpserver
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.plan: list = []
        self.slow_done = 0
        httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(self.handle)

    @property
    def url(self) -> str:
        return self.httpserver.url_for("/v1")

    def handle(self, request) -> Response:
        body = json.loads(request.get_data())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        action = self.plan.pop(0) if self.plan else "ok"
        if action in (429, 500):
            return Response(json.dumps({"error": {"message": "try later"}}), status=action, content_type="application/json")
        if action == "echo-401":  # a careless server that echoes the credentials it refused
            return Response(json.dumps({"error": f"bad key: {request.headers.get('Authorization')}"}), status=401, content_type="application/json")
        if action == "slow":
            time.sleep(1.0)
            self.slow_done += 1
        content = body["messages"][-1]["content"]
        text = content[0]["text"]
        images = [c for c in content if c["type"] == "image_url"]
        if action == "malformed":
            answer = "Sure! The patches show {label: stripes"
        elif images:
            n = len(self.requests)
            answer = json.dumps({"label": f"feature {n}", "description": f"what the patches of request {n} share", "confidence": 0.75, "part_of_class": n % 2 == 0})
        else:
            answer = "```json\n" + json.dumps({"relation": "the lower feature is a part of the upper one"}) + "\n```"
        del text
        return Response(json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}), content_type="application/json")

    def describe_requests(self) -> list[dict]:
        return [b for b in self.requests if any(c["type"] == "image_url" for c in b["messages"][-1]["content"])]


@pytest.fixture
def server(httpserver) -> FakeVisionServer:
    return FakeVisionServer(httpserver)


@pytest.fixture
def key(monkeypatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _labeller(server, tmp_path, **kw) -> OpenAILabeller:
    kw = {"api_key_env": KEY_ENV, "cache_dir": tmp_path / "cache", "backoff": 0.01, "timeout": 5.0, **kw}
    return OpenAILabeller(server.url, MODEL, **kw)


def _n_requests(d: Path) -> int:
    """Requests labelling one class sends: one per group, and one per group with children."""
    from neurflow import load_circuit

    c = load_circuit(d)
    return len(c.groups) + len({(e.parent_layer, e.parent_index) for e in c.group_edges})


def test_answers_land_in_the_graph_with_the_documented_request(graph, server, key, class_dirs, tmp_path):
    from neurflow.ingest.labelling import write_labels
    from neurflow.ingest.pipeline import load

    d = class_dirs[0]
    labeller = _labeller(server, tmp_path)
    (outcome,) = label_classes([d], labeller)
    assert outcome.status == "labelled" and labeller.sent == len(server.requests) == _n_requests(d)
    stored = read_labels(d)
    assert len(stored) == outcome.n_groups > 0
    assert all(lab.source == f"openai:{MODEL}:{PROMPT_VERSION}" and lab.label.startswith("feature ") and lab.score == 0.75 for lab in stored.values())

    # the request: model, system prompt, the documented step-1 prompt and one PNG grid of the thumbnails
    job_groups = {(lab.layer, lab.index) for lab in stored.values()}
    first = server.describe_requests()[0]
    assert first["model"] == MODEL and first["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    text = first["messages"][-1]["content"][0]["text"]
    assert text.startswith(DESCRIBE_PROMPT.split("{n}")[0]) and "'alpha'" in text and "Step 1" in text
    (image,) = [c for c in first["messages"][-1]["content"] if c["type"] == "image_url"]
    assert image["image_url"]["url"].startswith("data:image/png;base64,")
    grid = Image.open(io.BytesIO(base64.b64decode(image["image_url"]["url"].split(",", 1)[1])))
    assert grid.format == "PNG" and grid.width >= 96 and grid.height >= 96
    assert all(h.get("Authorization") == f"Bearer {KEY}" for h in server.headers)
    assert len(server.describe_requests()) == len(job_groups)
    relation_texts = [b["messages"][-1]["content"][0]["text"] for b in server.requests if b not in server.describe_requests()]
    assert relation_texts and all("Step 2" in t and "Lower group" in t for t in relation_texts)

    # loading the artifact restores the stored labels; write_labels writes them too
    load(graph.driver, graph.database, [d], log=lambda _m: None)
    write_labels(graph, [d])
    records, _, _ = graph.driver.execute_query(
        "MATCH (g:NeuronGroup) RETURN g.layer AS layer, g.index AS index, g.label AS label, g.label_source AS source, g.caption AS caption",
        database_=graph.database,
    )
    assert {(r["layer"], r["index"]): r["label"] for r in records} == {k: v.label for k, v in stored.items()}
    assert all(r["caption"] == r["label"] for r in records)
    rels, _, _ = graph.driver.execute_query("MATCH ()-[e:FLOWS_TO]->() RETURN e.relation AS relation", database_=graph.database)
    texts = [r["relation"] for r in rels]
    assert texts and all(texts) and "the lower feature is a part of the upper one" in texts


def test_the_cache_prevents_a_second_request(server, key, class_dirs, tmp_path):
    d = class_dirs[0]
    label_classes([d], _labeller(server, tmp_path))
    sent = len(server.requests)
    again = _labeller(server, tmp_path)
    (outcome,) = label_classes([d], again, force=True)  # force: ask again, but the cache answers
    assert outcome.status == "labelled" and again.sent == 0 and again.cache_hits == sent
    assert len(server.requests) == sent
    third = _labeller(server, tmp_path)
    (outcome,) = label_classes([d], third)  # stored labels of the same source: not even the cache
    assert outcome.status == "cached" and third.sent == third.cache_hits == 0
    # another model is another cache key
    other = OpenAILabeller(server.url, "other-model", api_key_env=KEY_ENV, cache_dir=tmp_path / "cache", backoff=0.01)
    label_classes([d], other)
    assert other.sent == sent and len(server.requests) == 2 * sent


def test_429_then_success_is_retried(server, key, class_dirs, tmp_path):
    d = class_dirs[0]
    server.plan = [429]
    labeller = _labeller(server, tmp_path)
    (outcome,) = label_classes([d], labeller)
    assert outcome.status == "labelled"
    assert labeller.sent == _n_requests(d) + 1 == len(server.requests)


def test_500_gives_up_after_the_retries_and_writes_nothing(server, key, class_dirs, tmp_path):
    d = class_dirs[0]
    server.plan = [500] * 10
    labeller = _labeller(server, tmp_path, retries=2)
    with pytest.raises(LabellerError, match=r"gave up after 3 attempts \(HTTP 500\)"):
        label_classes([d], labeller)
    assert len(server.requests) == 3 and not (d / LABELS_FILE).exists()


def test_malformed_json_is_a_clear_error_and_nothing_is_half_written(graph, server, key, class_dirs, tmp_path):
    from click.testing import CliRunner

    from neurflow.ingest.cli import main
    from neurflow.ingest.pipeline import load

    load(graph.driver, graph.database, class_dirs, log=lambda _m: None)
    n_first = _n_requests(class_dirs[0])
    server.plan = ["ok"] * n_first + ["malformed"]  # the first class is fine, the second's first answer is not
    out = class_dirs[0].parent.parent
    result = CliRunner().invoke(main, ["label", "--labeller", "openai", "--out", str(out), "--base-url", server.url, "--model", MODEL,
                                       "--api-key-env", KEY_ENV, "--cache", str(tmp_path / "cache"), "--retries", "0", "--no-concepts"])
    assert result.exit_code == 5, result.output
    assert "malformed answer" in result.output and "beta" in result.output
    assert KEY not in result.output
    assert (class_dirs[0] / LABELS_FILE).exists() and not (class_dirs[1] / LABELS_FILE).exists()
    records, _, _ = graph.driver.execute_query("MATCH (g:NeuronGroup) WHERE g.label IS NOT NULL RETURN count(g) AS n", database_=graph.database)
    assert records[0]["n"] == 0  # the graph is written only after every class succeeded


def test_timeout_is_retried_then_a_clear_error(server, key, class_dirs, tmp_path):
    server.plan = ["slow", "slow"]
    labeller = _labeller(server, tmp_path, timeout=0.3, retries=1)
    with pytest.raises(LabellerError, match=r"no answer within 0.3 s"):
        label_classes([class_dirs[0]], labeller)
    assert labeller.sent == 2 and not (class_dirs[0] / LABELS_FILE).exists()
    deadline = time.monotonic() + 10  # let the server finish the abandoned requests before the next test
    while server.slow_done < 2 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_missing_key_fails_before_any_request(server, monkeypatch, class_dirs, tmp_path):
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(LabellerError, match=KEY_ENV):
        _labeller(server, tmp_path)
    result = CliRunner().invoke(main, ["label", "--labeller", "openai", "--out", str(class_dirs[0].parent.parent), "--base-url", server.url,
                                       "--model", MODEL, "--api-key-env", KEY_ENV, "--no-graph"])
    assert result.exit_code == 5 and f"the API key variable {KEY_ENV} is not set" in result.output
    assert server.requests == []


def test_the_key_never_appears_in_output_files_or_logs(server, key, class_dirs, tmp_path, caplog):
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    caplog.set_level(logging.DEBUG)
    out = class_dirs[0].parent.parent
    args = ["label", "--labeller", "openai", "--out", str(out), "--classes", "alpha", "--base-url", server.url, "--model", MODEL,
            "--api-key-env", KEY_ENV, "--cache", str(tmp_path / "cache"), "--no-graph"]
    server.plan = ["echo-401"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 5 and "HTTP 401" in refused.output and "***" in refused.output, refused.output
    ok = CliRunner().invoke(main, [*args, "--format", "json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)[0]["groups"]
    texts = [refused.output, ok.output, caplog.text, repr(_labeller(server, tmp_path))]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".tmp", ".log", "")]
    assert all(KEY not in t for t in texts)
    assert any(p.name == LABELS_FILE for p in tmp_path.rglob("*"))


def test_dry_run_and_request_cap(server, key, class_dirs, tmp_path):
    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    d = class_dirs[0]
    out = d.parent.parent
    base = ["label", "--labeller", "openai", "--out", str(out), "--classes", "alpha", "--base-url", server.url, "--model", MODEL,
            "--api-key-env", KEY_ENV, "--cache", str(tmp_path / "cache"), "--no-graph", "--no-concepts"]
    dry = CliRunner().invoke(main, [*base, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"alpha: {_n_requests(d)} request(s)" in dry.output and server.requests == []
    capped = CliRunner().invoke(main, [*base, "--max-requests", "2"])
    assert capped.exit_code == 5 and "request cap reached (--max-requests 2)" in capped.output
    assert len(server.requests) == 2 and not (d / LABELS_FILE).exists()
    done = CliRunner().invoke(main, base)  # resumes: the two answers come from the cache
    assert done.exit_code == 0 and len(server.requests) == _n_requests(d)
    assert read_class_labels(d) is not None
    dry_again = CliRunner().invoke(main, [*base, "--dry-run"])
    assert "alpha: 0 request(s)" in dry_again.output and len(server.requests) == _n_requests(d)


def test_atlas_concepts_are_labelled_from_their_members_patches(server, key, class_dirs, tmp_path):
    from click.testing import CliRunner

    from neurflow.ingest.cli import main
    from neurflow.ingest.labelling.concepts import read_concept_labels

    out = class_dirs[0].parent.parent
    base = ["label", "--labeller", "openai", "--out", str(out), "--classes", "alpha", "--base-url", server.url, "--model", MODEL,
            "--api-key-env", KEY_ENV, "--cache", str(tmp_path / "cache"), "--no-graph"]
    dry = CliRunner().invoke(main, [*base, "--dry-run"])
    n_concepts = int(dry.stdout.split("atlas concepts: ")[1].split()[0])
    assert dry.exit_code == 0 and n_concepts > 0 and server.requests == []
    done = CliRunner().invoke(main, base)
    assert done.exit_code == 0, done.output
    concept_requests = [b for b in server.requests if "examples of one concept" in b["messages"][-1]["content"][0]["text"]]
    assert len(concept_requests) == n_concepts and len(server.requests) == _n_requests(class_dirs[0]) + n_concepts
    assert all(any(c["type"] == "image_url" for c in b["messages"][-1]["content"]) for b in concept_requests)
    stored = read_concept_labels(class_dirs)
    assert len(stored) == n_concepts and all(lab.label.startswith("feature ") and lab.part_of_class is None for lab in stored.values())
    again = CliRunner().invoke(main, [*base, "--dry-run"])
    assert "atlas concepts: 0 request(s)" in again.stdout
