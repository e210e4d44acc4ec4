"""The ``openai`` labeller: a multimodal model behind any OpenAI-compatible chat-completions
server (OpenAI's API, vLLM, Ollama, ...) describes each neuron group (paper Section 5.2).

Two steps, as in the paper, with our own prompts (:data:`DESCRIBE_PROMPT`,
:data:`RELATION_PROMPT`, version :data:`PROMPT_VERSION`):

1. per group, one request with a grid image of its exemplar patches (the thumbnails
   ``neurflow compute`` saved): "describe the common visual feature"; the answer is a JSON
   object ``{"label", "description", "confidence", "part_of_class"}``, validated;
2. per group that has children, one text request with its description and that of its
   strongest child (the group of the layer below with the largest share of its incoming
   attribution): "explain how the lower concept contributes to the higher one"; the answer
   is ``{"relation"}``. The other FLOWS_TO edges get templated text.

Groups are labelled lowest layer first, so a parent's step 2 sees its child's answer.

Transport: plain HTTP with the standard library (``urllib``): one POST to
``{base_url}/chat/completions`` per request, ``Authorization: Bearer <key>``. We need
exact control over what is retried, how long we wait and what is counted against
``--max-requests``, and the ``openai`` package would add its own retry loop and a
dependency for one endpoint.

Behaviour (tested against a local server):

* the key comes from an environment variable (``--api-key-env``, default
  ``OPENAI_API_KEY``); missing: an error before any request. It is never logged, stored,
  cached or put in a message (server error bodies are shown with it masked);
* HTTP 429 and 5xx, and timeouts (``timeout`` seconds per request), are retried up to
  ``retries`` times with exponential backoff (``backoff`` x 2^attempt seconds, or the
  server's ``Retry-After`` when given, at most 60 s); then an error. Other 4xx: an error at once;
* an answer that is not the JSON asked for (or lacks a field, or has a wrong type) is an
  error naming the group; nothing of that class is written (answers already validated
  stay in the cache, so a re-run resumes);
* every request sent, retries included, counts against ``max_requests``; reaching the cap
  is an error (re-run to continue: cached answers cost nothing);
* validated answers are cached on disk, keyed by (server, model, prompt version, the
  prompt's text, the sha256 of every image), so a repeated run sends nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from .base import ClassJob, GroupView, now, template_relation
from .store import GroupLabel, RelationLabel

__all__ = ["PROMPT_VERSION", "SYSTEM_PROMPT", "DESCRIBE_PROMPT", "RELATION_PROMPT", "CONCEPT_PROMPT", "OpenAILabeller", "default_cache_dir", "grid_image"]

PROMPT_VERSION = "v1"

SYSTEM_PROMPT = (
    "You help interpret an image classifier. You are shown the image patches that most typically activate a group of "
    "neurons, and you name the visual feature they share. Answer with one JSON object and nothing else."
)

DESCRIBE_PROMPT = (
    "The image is a grid of {n} patches cut from images of the class '{cls}'. They are the exemplar patches of one group "
    "of neurons in layer '{layer}' of the classifier (layer {depth} below its output).\n"
    "Step 1: describe the visual feature these patches have in common (colour, texture, shape, object part, background, "
    "...), ignoring what differs between them.\n"
    "Answer with this JSON object:\n"
    '{{"label": "<2 to 5 words naming the common feature>", "description": "<one or two sentences>", '
    '"confidence": <a number from 0 to 1: how clearly the patches share this feature>, '
    '"part_of_class": <true if the feature is part of the {cls} object itself (the object or one of its parts), '
    "false if it is context (background, another object), null if you cannot tell>}}"
)

RELATION_PROMPT = (
    "An image classifier recognises '{cls}'. A group of neurons in layer '{child_layer}' feeds a group in the layer above, "
    "'{parent_layer}', and carries {share} of the attribution into it.\n"
    'Lower group: "{child_label}": {child_description}\n'
    'Upper group: "{parent_label}": {parent_description}\n'
    "Step 2: explain in one or two sentences how the lower concept contributes to the higher one.\n"
    'Answer with this JSON object: {{"relation": "<your explanation>"}}'
)


CONCEPT_PROMPT = (
    "The image is a grid of {n} patches cut from images of the classes {classes}. They are examples of one concept that "
    "layer '{layer}' of the classifier uses across these classes.\n"
    "Step 1: describe the visual feature these patches have in common, ignoring what differs between them.\n"
    "Answer with this JSON object:\n"
    '{{"label": "<2 to 5 words naming the common feature>", "description": "<one or two sentences>", '
    '"confidence": <a number from 0 to 1: how clearly the patches share this feature>}}'
)


def default_cache_dir() -> Path:
    """``<neurflow data folder>/label-cache`` (``$NEURFLOW_HOME`` or ``~/.local/share/neurflow``)."""
    from ..embedded_db import data_dir

    return data_dir() / "label-cache"


def grid_image(thumbnails, columns: int = 4, cell: int = 96, gap: int = 4) -> bytes:
    """The exemplar thumbnails tiled into one PNG (row by row, closest to the centre first)."""
    from PIL import Image

    from .service import LabellerError

    paths = [p for p in thumbnails if p is not None and Path(p).is_file()]
    if not paths:
        raise LabellerError("the group has no exemplar thumbnails (recompute the artifact with thumbnails: 'neurflow compute' writes them)")
    rows = (len(paths) + columns - 1) // columns
    cols = min(columns, len(paths))
    canvas = Image.new("RGB", (cols * cell + (cols - 1) * gap, rows * cell + (rows - 1) * gap), (255, 255, 255))
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            canvas.paste(im.convert("RGB").resize((cell, cell)), ((i % columns) * (cell + gap), (i // columns) * (cell + gap)))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class OpenAILabeller:
    """Labels groups with a vision model behind an OpenAI-compatible chat-completions API.

    Args:
        base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://localhost:11434/v1``.
        model: the model name the server knows (``gpt-4o-mini``, ``llava``, ...).
        api_key_env: the environment variable holding the key (read here, kept in memory only).
        timeout: seconds per request.
        retries: retries after a 429, a 5xx or a timeout.
        backoff: first retry delay in seconds (doubled each attempt).
        max_requests: most requests this labeller sends (retries included); None = no cap.
        cache_dir: where validated answers are kept (default :func:`default_cache_dir`).
        dry_run: send nothing; count the requests a run would send (``planned``).

    Raises:
        LabellerError: the key's environment variable is unset or empty.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 1.0,
        max_requests: int | None = None,
        cache_dir: Path | None = None,
        dry_run: bool = False,
        columns: int = 4,
    ) -> None:
        from .service import LabellerError

        if not base_url.startswith(("http://", "https://")):
            raise LabellerError(f"--base-url must start with http:// or https://, got {base_url!r}")
        if not model:
            raise LabellerError("--model is required for the openai labeller")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env, "") if api_key_env else ""
        if not self._key and not dry_run:
            raise LabellerError(
                f"the API key variable {api_key_env} is not set: export {api_key_env}=... (a local server that needs no key "
                "accepts any value)"
            )
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.max_requests = max_requests
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.dry_run = dry_run
        self.columns = columns
        self.sent = 0  # HTTP requests sent, retries included
        self.planned = 0  # requests a dry run would send
        self.cache_hits = 0

    def __repr__(self) -> str:  # never show the key
        return f"OpenAILabeller(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def source(self) -> str:
        return f"openai:{self.model}:{PROMPT_VERSION}"

    # ------------------------------------------------------------------ cache

    def _cache_key(self, kind: str, text: str, images: list[bytes]) -> str:
        doc = {"server": self.base_url, "model": self.model, "prompt_version": PROMPT_VERSION, "kind": kind, "text": _sha(text.encode()), "images": [_sha(b) for b in images]}
        return _sha(json.dumps(doc, sort_keys=True).encode())

    def _cache_get(self, key: str) -> dict | None:
        path = self.cache_dir / key[:2] / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _cache_put(self, key: str, answer: dict) -> None:
        path = self.cache_dir / key[:2] / f"{key}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(answer), encoding="utf-8")
        os.replace(tmp, path)

    # ------------------------------------------------------------------ HTTP

    def _mask(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _post(self, body: dict, what: str) -> dict:
        from .service import LabellerError

        data = json.dumps(body).encode()
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if self.max_requests is not None and self.sent >= self.max_requests:
                raise LabellerError(
                    f"request cap reached (--max-requests {self.max_requests}) before {what}; answers so far are cached: run again to continue"
                )
            self.sent += 1
            req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
            delay = self.backoff * (2**attempt)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = resp.read()
                try:
                    return json.loads(payload)
                except ValueError:
                    raise LabellerError(f"{what}: the server's answer is not JSON (not a chat-completions response): {self._mask(payload[:200].decode('utf-8', 'replace'))!r}") from None
            except urllib.error.HTTPError as exc:
                text = self._mask(exc.read()[:300].decode("utf-8", "replace")) if exc.fp is not None else ""
                if exc.code == 429 or exc.code >= 500:
                    last = f"HTTP {exc.code}"
                    retry_after = exc.headers.get("Retry-After") if exc.headers else None
                    if retry_after:
                        try:
                            delay = min(60.0, float(retry_after))
                        except ValueError:
                            pass
                else:
                    hint = " (check the key in " + self.api_key_env + ")" if exc.code in (401, 403) else ""
                    raise LabellerError(f"{what}: the server answered HTTP {exc.code}{hint}: {text}") from None
            except (TimeoutError, socket.timeout):
                last = f"no answer within {self.timeout:g} s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                    last = f"no answer within {self.timeout:g} s"
                else:
                    raise LabellerError(f"{what}: cannot reach {self.base_url}: {exc.reason}") from None
            if attempt < self.retries:
                time.sleep(delay)
        raise LabellerError(f"{what}: gave up after {self.retries + 1} attempts ({last})")

    def _ask(self, what: str, kind: str, text: str, images: list[bytes], validate) -> dict | None:
        """A validated answer: from the cache, or from the server (then cached). None in a dry run
        when it would have to be sent."""
        from .service import LabellerError

        key = self._cache_key(kind, text, images)
        cached = self._cache_get(key)
        if cached is not None:
            self.cache_hits += 1
            return cached
        if self.dry_run:
            self.planned += 1
            return None
        content = [{"type": "text", "text": text}] + [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b).decode()}} for b in images
        ]
        body = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        envelope = self._post(body, what)
        try:
            message = envelope["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LabellerError(f"{what}: the server's answer has no choices[0].message.content") from None
        try:
            answer = validate(_parse_json(message))
        except ValueError as exc:
            raise LabellerError(f"{what}: malformed answer ({exc}): {self._mask(str(message)[:200])!r}") from None
        self._cache_put(key, answer)
        return answer

    # ------------------------------------------------------------------ labelling

    def describe_prompt(self, job: ClassJob, g: GroupView) -> str:
        n = sum(1 for p in g.thumbnails if p is not None)
        return DESCRIBE_PROMPT.format(n=n, cls=job.class_name, layer=g.layer, depth=g.depth)

    def label_class(self, job: ClassJob):
        """Labels of ``job.groups`` (step 1) and their FLOWS_TO relations (step 2 for each
        parent's strongest child, templated text for the other edges)."""
        from .service import LabellerError

        if self.dry_run:
            raise LabellerError("a dry run sends nothing and labels nothing: use count_requests()")
        return self._label(job)

    def count_requests(self, job: ClassJob) -> int:
        """How many requests labelling ``job`` would send now (cache misses); sends nothing."""
        saved, self.dry_run, self.planned = self.dry_run, True, 0
        try:
            self._label(job)
        finally:
            self.dry_run = saved
        return self.planned

    def label_concept(self, jobs, view: GroupView, class_names) -> GroupLabel | None:
        """An atlas concept from a grid of its members' exemplar patches (None in a dry run)."""
        n = sum(1 for p in view.thumbnails if p is not None)
        text = CONCEPT_PROMPT.format(n=n, classes=", ".join(f"'{c}'" for c in class_names), layer=view.layer)
        answer = self._ask(f"concept {view.layer} k{view.index}", "concept", text, [grid_image(view.thumbnails, self.columns)], _validate_describe)
        if answer is None:
            return None
        return GroupLabel(view.layer, view.index, answer["label"], answer["description"], answer["confidence"], None, None, self.source, now())

    def _label(self, job: ClassJob):
        stamp = now()
        labels: dict[tuple[str, int], GroupLabel] = {}
        for g in job.groups:
            what = f"{job.class_name} {g.layer} g{g.index}"
            answer = self._ask(what, "describe", self.describe_prompt(job, g), [grid_image(g.thumbnails, self.columns)], _validate_describe)
            if answer is None:
                continue
            labels[(g.layer, g.index)] = GroupLabel(
                g.layer, g.index, answer["label"], answer["description"], answer["confidence"], None, answer["part_of_class"], self.source, stamp
            )
        wanted = {(g.layer, g.index) for g in job.groups}
        # step 2: each parent with its strongest child (largest share, then the first key)
        strongest: dict[tuple[str, int], tuple[tuple[str, int, str, int], float]] = {}
        for key, (_w, share) in sorted(job.edges.items()):
            parent, child = (key[2], key[3]), (key[0], key[1])
            if parent in wanted and child in wanted and (parent not in strongest or share > strongest[parent][1]):
                strongest[parent] = (key, share)
        relations: dict[tuple[str, int, str, int], RelationLabel] = {}
        for parent, (key, share) in sorted(strongest.items()):
            child = (key[0], key[1])
            if parent not in labels or child not in labels:  # dry run: a step-1 answer is still missing
                self.planned += 1
                continue
            c, p = labels[child], labels[parent]
            text = RELATION_PROMPT.format(
                cls=job.class_name, child_layer=c.layer, parent_layer=p.layer, share=f"{share:.0%}",
                child_label=c.label, child_description=c.description, parent_label=p.label, parent_description=p.description,
            )
            answer = self._ask(f"{job.class_name} {c.layer} g{c.index} -> {p.layer} g{p.index}", "relation", text, [], _validate_relation)
            if answer is not None:
                relations[key] = RelationLabel(key[0], key[1], key[2], key[3], answer["relation"], self.source)
        for key, (w, share) in job.edges.items():
            if key not in relations and (key[0], key[1]) in labels and (key[2], key[3]) in labels:
                relations[key] = template_relation(labels[(key[0], key[1])], labels[(key[2], key[3])], w, share, self.source + ":template")
        return labels, relations


def _parse_json(text: str) -> dict:
    text = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    if fenced:
        text = fenced.group(1)
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("not a JSON object") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    return doc


def _text(doc: dict, key: str, max_len: int) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"'{key}' must be a non-empty string")
    return value.strip()[:max_len]


def _validate_describe(doc: dict) -> dict:
    confidence = doc.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 <= float(confidence) <= 1.0:
        raise ValueError("'confidence' must be a number from 0 to 1")
    part = doc.get("part_of_class")
    if part is not None and not isinstance(part, bool):
        raise ValueError("'part_of_class' must be true, false or null")
    return {"label": _text(doc, "label", 80), "description": _text(doc, "description", 600), "confidence": float(confidence), "part_of_class": part}


def _validate_relation(doc: dict) -> dict:
    return {"relation": _text(doc, "relation", 600)}
