"""The ``annotations`` labeller: names a neuron group by the annotated concept its exemplar
patches cover most (the NetDissect idea, with the exemplar boxes as the group's region).

Annotation format (a folder, ``--annotations DIR``)::

    DIR/concepts.json    {"concepts": {"0": "bee", "1": "fish", ..., "9": "water"},
                          "class_concepts": {"bee": ["bee"], ...},   (optional)
                          "ignore": [255]}                           (optional, default [255])
    DIR/<image id>.png   one label map per image: the image's path relative to the data
                         folder (its ImageFolder root) with the suffix replaced by .png;
                         each pixel holds a concept id (8-bit "L" maps: 0-254; 16-bit maps
                         for more concepts); ids in "ignore" are unlabelled pixels.

A label map has the size of the original image; it goes through the same geometry as the
image (:func:`neurflow.ingest.preprocess.fit`, with nearest-neighbour resampling), read from the artifact's run record, so the patch boxes of the
artifact index it directly. ``class_concepts`` names the concepts that are the class's own
object or object parts; a class missing from it owns the concept with its own name.

Scores: for each concept, the share of the labelled pixels it covers inside the group's
exemplar boxes, averaged over the exemplars. The label is the best concept; its score is
that share, with the runner-up. A group whose best concept covers less than
:data:`MIXED_THRESHOLD` (half) of the pixels is *mixed*: labelled "best + runner-up", with
``part_of_class`` None. Otherwise ``part_of_class`` says whether the best concept is one of
the class's own concepts. The root group (the logit layer's, depth 0) is the class output
itself: it is labelled with the class name (score: the share of the class's own concepts,
runner-up: the best other concept). Relations are templated from the two labels and the
edge weight.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..errors import InputError
from ..preprocess import Preprocess, fit
from .base import ClassJob, now, template_relation
from .store import GroupLabel, RelationLabel

__all__ = ["MIXED_THRESHOLD", "AnnotationSet", "AnnotationsLabeller", "read_annotations", "demo_annotations", "group_concept_shares"]

#: Below this pixel share of the best concept a group is labelled "mixed".
MIXED_THRESHOLD = 0.5
CONCEPTS_FILE = "concepts.json"


@dataclass(frozen=True)
class AnnotationSet:
    """An annotation folder: concept names by id, each class's own concepts, ignored ids."""

    root: Path
    concepts: dict[int, str]
    class_concepts: dict[str, tuple[str, ...]]
    ignore: frozenset[int] = frozenset({255})
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def own_concepts(self, class_name: str) -> tuple[str, ...]:
        return self.class_concepts.get(class_name, (class_name,))

    def label_map(self, image_id: str, preprocess: dict | None, size: int) -> np.ndarray:
        """The label map of one image, in the geometry of the model input (``size`` square)."""
        key = (image_id, json.dumps(preprocess, sort_keys=True), size)
        if key in self._cache:
            return self._cache[key]
        path = self.root / PurePosixPath(image_id).with_suffix(".png")
        if not path.is_file():
            raise InputError(f"no label map for image '{image_id}' (expected {path})")
        with Image.open(path) as src:
            im: Image.Image = src
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise InputError(f"label map {path} has mode {im.mode}; expected a single-channel 8- or 16-bit PNG of concept ids")
            if im.mode == "P":
                im = Image.fromarray(np.asarray(im))  # palette indices are the ids
            w, h = im.size
            if preprocess and preprocess.get("resize") and preprocess.get("input_size"):
                im = fit(im, Preprocess.from_record(preprocess), Image.Resampling.NEAREST)
            elif (w, h) != (size, size):
                raise InputError(f"label map {path} is {w}x{h} but the model input is {size}x{size} and the artifact has no preprocessing record")
            arr = np.asarray(im).astype(np.int64)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = arr
        return arr


def read_annotations(root: Path) -> AnnotationSet:
    """Read ``root/concepts.json`` (see the module docstring).

    Raises:
        InputError: no such folder or file, or it is not in the documented format.
    """
    root = Path(root)
    path = root / CONCEPTS_FILE
    if not path.is_file():
        raise InputError(f"no annotations at {root} (missing {CONCEPTS_FILE}; see 'neurflow label --help' for the format)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        concepts = {int(k): str(v) for k, v in doc["concepts"].items()}
        class_concepts = {str(k): tuple(str(c) for c in v) for k, v in doc.get("class_concepts", {}).items()}
        ignore = frozenset(int(i) for i in doc.get("ignore", [255]))
    except (KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not an annotation concept file ({exc!r}); expected {{\"concepts\": {{\"0\": \"name\", ...}}}}") from None
    names = set(concepts.values())
    for cls, own in class_concepts.items():
        unknown = [c for c in own if c not in names]
        if unknown:
            raise InputError(f"{path}: class_concepts of '{cls}' names unknown concepts {unknown}")
    return AnnotationSet(root, concepts, class_concepts, ignore)


def group_concept_shares(annotations: AnnotationSet, job: ClassJob, image_ids, boxes) -> dict[str, float]:
    """Mean over the exemplar boxes of each concept's share of the labelled pixels."""
    return _mean_shares(annotations, [(job, image_id, box) for image_id, box in zip(image_ids, boxes)])


def _mean_shares(annotations: AnnotationSet, patches) -> dict[str, float]:
    """``patches``: (job, image id, box) triples, possibly of several classes."""
    totals: dict[str, float] = {}
    n = 0
    for job, image_id, (x0, y0, x1, y1) in patches:
        crop = annotations.label_map(image_id, job.preprocess, int(job.circuit.patches.image_size))[y0:y1, x0:x1].ravel()
        crop = crop[~np.isin(crop, list(annotations.ignore))]
        if crop.size == 0:
            continue
        ids, counts = np.unique(crop, return_counts=True)
        n += 1
        for i, c in zip(ids.tolist(), counts.tolist()):
            name = annotations.concepts.get(int(i), f"concept {i}")
            totals[name] = totals.get(name, 0.0) + c / crop.size
    return {k: v / n for k, v in totals.items()} if n else {}


class AnnotationsLabeller:
    """Labels groups from per-pixel concept annotations (offline, deterministic)."""

    name = "annotations"

    def __init__(self, annotations: AnnotationSet, threshold: float = MIXED_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise InputError(f"the mixed threshold must be in (0, 1], got {threshold}")
        self.annotations = annotations
        self.threshold = threshold

    @property
    def source(self) -> str:
        return "annotations" if self.threshold == MIXED_THRESHOLD else f"annotations:mixed<{self.threshold:g}"

    def label_class(self, job: ClassJob):
        stamp = now()
        own = set(self.annotations.own_concepts(job.class_name))
        labels: dict[tuple[str, int], GroupLabel] = {}
        for g in job.groups:
            shares = group_concept_shares(self.annotations, job, g.image_ids, g.boxes)
            ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
            if not ranked:
                labels[(g.layer, g.index)] = GroupLabel(g.layer, g.index, "unlabelled", "no annotated pixels in its exemplar patches", None, None, None, self.source, stamp)
                continue
            best, score = ranked[0]
            runner = ranked[1][0] if len(ranked) > 1 else None
            top = ", ".join(f"{k} {v:.0%}" for k, v in ranked[:3])
            own_share = round(float(sum(v for k, v in shares.items() if k in own)), 4)
            if g.depth == 0:  # the root group is the class's logit: named after the class
                other = next((k for k, _ in ranked if k not in own), None)
                text = f"the output (logit) of class {job.class_name}; exemplar pixels: {top}"
                labels[(g.layer, g.index)] = GroupLabel(g.layer, g.index, job.class_name, text, own_share, other, True, self.source, stamp, own_share)
                continue
            if score < self.threshold and runner is not None:
                label, part = f"{best} + {runner}", None
                text = f"mixed: no concept covers {self.threshold:.0%} of its exemplar pixels ({top})"
            else:
                label, part = best, best in own
                text = f"{best} ({'part of' if part else 'not part of'} {job.class_name}); exemplar pixels: {top}"
            labels[(g.layer, g.index)] = GroupLabel(g.layer, g.index, label, text, round(float(score), 4), runner, part, self.source, stamp, own_share)
        relations: dict[tuple[str, int, str, int], RelationLabel] = {}
        for (cl, ci, pl, pi), (w, share) in job.edges.items():
            if (cl, ci) in labels and (pl, pi) in labels:
                relations[(cl, ci, pl, pi)] = template_relation(labels[(cl, ci)], labels[(pl, pi)], w, share, self.source)
        return labels, relations

    def label_concept(self, jobs, view, class_names) -> GroupLabel:
        """An atlas concept, from the exemplar patches of its closest semantic groups
        (``jobs[i]`` is the class of patch ``i``); ``part_of_class`` is None (many classes)."""
        shares = _mean_shares(self.annotations, list(zip(jobs, view.image_ids, view.boxes)))
        ranked = sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
        used = f"used by {', '.join(class_names)}"
        if not ranked:
            return GroupLabel(view.layer, view.index, "unlabelled", f"no annotated pixels in its patches; {used}", None, None, None, self.source, now())
        (best, score), runner = ranked[0], (ranked[1][0] if len(ranked) > 1 else None)
        top = ", ".join(f"{k} {v:.0%}" for k, v in ranked[:3])
        mixed = score < self.threshold and runner is not None
        label = f"{best} + {runner}" if mixed else best
        text = f"{'mixed: ' if mixed else ''}{used}; exemplar pixels: {top}"
        return GroupLabel(view.layer, view.index, label, text, round(float(score), 4), runner, None, self.source, now())


def _world_root(path: Path) -> Path:
    path = Path(path)
    if (path / "world.json").is_file():
        return path
    if (path / "world" / "world.json").is_file():
        return path / "world"
    raise InputError(f"no demo world at {path} (no world.json there or in {path / 'world'})")


def demo_annotations(world_root: Path, split: str = "val", threshold: float = MIXED_THRESHOLD) -> AnnotationsLabeller:
    """The annotations labeller of the demo world: its per-pixel concept maps converted once to
    the documented format (``<world>/annotations_<split>/``, redone when the world changes)
    and read back through :func:`read_annotations`, like any user's annotations.

    Args:
        world_root: the world's folder (holding ``world.json``) or the demo root above it.
        split: the split the circuits were computed from (the demo uses ``val``).
    """
    from ..demo.world import concept_maps, load_world

    world = load_world(_world_root(world_root))
    out = world.root / f"annotations_{split}"
    stamp = hashlib.sha256((world.root / "world.json").read_bytes()).hexdigest()
    marker = out / ".world-sha256"
    if not (marker.is_file() and marker.read_text().strip() == stamp and (out / CONCEPTS_FILE).is_file()):
        out.mkdir(parents=True, exist_ok=True)
        prefix = f"{split}/"
        for rel, cmap in concept_maps(world, split).items():
            target = out / PurePosixPath(rel[len(prefix):] if rel.startswith(prefix) else rel).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.asarray(cmap, dtype=np.uint8), mode="L").save(target)
        doc = {
            "concepts": {str(i): name for i, name in enumerate(world.concepts)},
            "class_concepts": {cls: [world.object_concepts[cls]] for cls in world.classes if cls in world.object_concepts},
            "ignore": [255],
        }
        tmp = out / (CONCEPTS_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, out / CONCEPTS_FILE)
        marker.write_text(stamp + "\n")
    return AnnotationsLabeller(read_annotations(out), threshold)
