"""The image debugger against the demo world's planted truth (issue: image debugging).

The demo world plants one spurious correlation: 90% of the training bees sit on the
``flowers`` background (5% of every other class). The trained demo CNN then calls some
non-bee images on flowers "bee". This module builds the demo (world, model, all five
circuits: ~5 minutes on 2 cores; set ``NEURFLOW_DEMO_ROOT`` to reuse a folder such as
``.neurflow/demo``), runs ``neurflow debug`` for every class without a database, and checks
what the debugger says against the generator's per-pixel concept maps:

* bee's top-ranked group is dominated by the planted background in its exemplar patches;
* masking it removes far more of the background-induced false positives than masking
  random neuron sets of the same size from the same layer, and it passes the threshold;
* for fish, kite and ladybug, no group passes the threshold;
* counterfactual ground truth: each false positive's object is pasted on every background
  (:func:`neurflow.ingest.demo.world.swap_background`); a false positive is
  *background-made* when a fresh draw of its own background keeps the prediction and some
  other background changes it. A class's predictions are background-biased when at least
  five of its false positives, and at least half, are background-made. The debugger flags
  exactly those classes. This is how leaf is judged: the planted bias has a mirror image
  in leaf (bees off flowers are called leaf, and are bees again on flowers), which the
  model learnt although nothing was planted in leaf;
* every group over the threshold shows more background than object in its exemplars;
* the cross-class concept atlas (whose sharing enters the score) is pure: at least 70% of the
  semantic groups of each large layer sit in a concept whose majority ground-truth concept is
  their own;
* negative control: the same world drawn *without* the planted correlation (every class on
  every background equally often) and a model trained on it: no group of any class passes,
  and no class is background-biased by the counterfactual test.

Every figure is printed (``pytest -s``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from neurflow.debugging import BIAS_THRESHOLD
from neurflow.ingest.demo.model import predict

pytestmark = pytest.mark.slow

BIASED, CONCEPT = "bee", "flowers"



def _build_and_debug(root: Path, bias=None):
    from neurflow.ingest.cli_demo import demo_request
    from neurflow.ingest.debugging import debug_classes
    from neurflow.ingest.demo.model import ensure_demo, load_split_tensors
    from neurflow.ingest.pipeline import compute

    world, trained = ensure_demo(root, quiet=True, bias=bias)
    req = demo_request(root)
    outcomes = compute(req, log=lambda *_: None)
    assert all(o.status in ("computed", "skipped") for o in outcomes), [(o.class_name, o.status, o.message) for o in outcomes]
    results = debug_classes(None, req, classes="all", write=False, draws=20, quiet=True, log=lambda *_: None)
    print(f"\n{root.name} model: val accuracy {trained.val_accuracy:.3f}; debugged {[c.class_name for c, _ in results]}")
    images, labels, paths = load_split_tensors(world, "val")
    model = trained.model.eval()
    return Debugged(world, {c.class_name: (c, r) for c, r in results}, root, model, labels, paths, predict(model, images))


@dataclass(frozen=True)
class Debugged:
    """One demo world after the debugger ran, with the model's predictions on ``val``."""

    world: object
    by_class: dict
    root: Path
    model: object
    labels: object  # (N,) true classes of the val images
    paths: list  # their paths relative to the world's root
    preds: object  # (N,) the model's predictions

    def predict_arrays(self, arrays: list) -> list[int]:
        """Predictions for uint8 (H, W, 3) images (counterfactuals)."""
        import torch

        return predict(self.model, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)).tolist()


@pytest.fixture(scope="module")
def debugged(tmp_path_factory):
    return _build_and_debug(Path(os.environ.get("NEURFLOW_DEMO_ROOT") or tmp_path_factory.mktemp("demo")))


@pytest.fixture(scope="module")
def unbiased(tmp_path_factory):
    from neurflow.ingest.demo.world import UNBIASED

    cache = os.environ.get("NEURFLOW_DEMO_ROOT")
    return _build_and_debug(Path(cache + "-unbiased") if cache else tmp_path_factory.mktemp("unbiased"), bias=UNBIASED)


def _exemplar_concepts(world, circuit, group) -> dict[str, float]:
    """Mean fraction of each concept's pixels in the group's exemplar patches (concept maps;
    the demo computes every circuit from the world's validation split)."""
    from neurflow.ingest.demo.world import concept_fractions

    totals: dict[str, float] = defaultdict(float)
    for p in group.exemplar_ids:
        image = f"val/{circuit.image_ids[int(circuit.patches.image_index[p])]}"
        box = tuple(int(v) for v in circuit.patches.boxes[p])
        for concept, frac in concept_fractions(world, image, box).items():
            totals[concept] += frac / len(group.exemplar_ids)
    return dict(totals)


def _print_ranking(name, result, n=5):
    print(f"{name}: {result.n_tp} TP, {result.n_fp} FP; threshold {result.threshold}")
    for rank, e in enumerate(result.groups[:n], start=1):
        print(
            f"  {rank}. {e.layer} g{e.index} bias {e.bias_score:.3f}  M_tp {e.tp_metric:.3f} M_fp {_f(e.fp_metric)}  "
            f"fp_flip {_f(e.fp_flip)} vs random {_f(e.random_fp_flip_mean)}±{_f(e.random_fp_flip_std)} (z {_f(e.z_fp_flip)}, p {_f(e.p_fp_flip)})  "
            f"tp_flip {_f(e.tp_flip)}  shared {e.shared_classes} ({_f(e.shared_fraction)})  neurons {list(e.channels)}"
        )


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def test_biased_class_top_group_is_the_planted_background(debugged):
    world, by_class = debugged.world, debugged.by_class
    circuit, result = by_class[BIASED]
    _print_ranking(BIASED, result)
    # the false positives are background-induced: every one of them shows the planted concept
    fp_backgrounds = _fp_backgrounds(world, result)
    print(f"{BIASED} false positives by background: {dict(sorted(fp_backgrounds.items()))}")
    assert result.n_fp >= 5 and set(fp_backgrounds) == {CONCEPT}

    top = result.groups[0]
    group = next(g for g in circuit.groups if g.layer == top.layer and g.index == top.index)
    shares = _exemplar_concepts(world, circuit, group)
    print(f"top group {top.layer} g{top.index}: exemplar concepts " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])))
    assert max(shares, key=shares.get) == CONCEPT
    assert shares[CONCEPT] >= 0.5

    # masking it removes far more false positives than random masks of its size
    assert top.fp_flip >= top.random_fp_flip_mean + 0.3
    assert top.z_fp_flip >= 2.0
    assert top.bias_score >= result.threshold


def _fp_backgrounds(world, result) -> dict[str, int]:
    """Backgrounds of the false positives (images of other classes predicted as the class)."""
    from neurflow.ingest.demo.world import image_background

    fps = result.image_ids[result.n_tp : result.n_tp + result.n_fp]
    assert len(fps) == result.n_fp
    counts: dict[str, int] = defaultdict(int)
    for image in fps:
        counts[image_background(world, f"val/{image}")] += 1
    return dict(counts)


@pytest.mark.parametrize("name", ["fish", "kite", "ladybug"])
def test_unbiased_class_has_no_group_over_the_threshold(debugged, name):
    world, by_class = debugged.world, debugged.by_class
    threshold = by_class[BIASED][1].threshold
    if name not in by_class:  # skipped by the debugger: no image of another class is predicted as it
        print(f"{name}: no false positives, nothing to debug")
        return
    circuit, result = by_class[name]
    _print_ranking(name, result, n=3)
    print(f"{name} false positives by background: {dict(sorted(_fp_backgrounds(world, result).items()))}")
    top = result.groups[0]
    group = next(g for g in circuit.groups if g.layer == top.layer and g.index == top.index)
    shares = _exemplar_concepts(world, circuit, group)
    print(f"{name} top group {top.layer} g{top.index}: exemplar concepts " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])[:3]))
    assert result.n_fp >= 1
    assert max(e.bias_score for e in result.groups) < threshold


def test_groups_separate_the_planted_concept_from_the_object(debugged):
    """Some group of the biased class is mostly the planted background and another mostly
    the object: the concept circuit separates them, which the ranking above builds on."""
    world, by_class = debugged.world, debugged.by_class
    circuit, _ = by_class[BIASED]
    obj = world.object_concepts[BIASED]
    per_group = {(g.layer, g.index): _exemplar_concepts(world, circuit, g) for g in circuit.groups}
    best_bg = max(per_group.items(), key=lambda kv: kv[1].get(CONCEPT, 0.0))
    best_obj = max(per_group.items(), key=lambda kv: kv[1].get(obj, 0.0))
    print(f"most {CONCEPT}: {best_bg[0]} {best_bg[1].get(CONCEPT, 0):.2f}; most {obj}: {best_obj[0]} {best_obj[1].get(obj, 0):.2f}")
    assert best_bg[1][CONCEPT] >= 0.8
    assert best_obj[1][obj] >= 0.5
    assert np.isfinite(best_bg[1][CONCEPT])


def test_debug_command_json_on_the_demo(debugged):
    """``neurflow debug --model demo --format json --no-graph`` prints what the library found."""
    import json

    from click.testing import CliRunner

    from neurflow.ingest.cli import main

    by_class, root = debugged.by_class, debugged.root
    args = ["debug", "--model", "demo", "--demo-root", str(root), "--data", str(root / "world" / "val"), "--out", str(root / "artifacts"),
            "--classes", BIASED, "--format", "json", "--no-graph", "--quiet", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    _, expected = by_class[BIASED]
    assert [d["class"]["name"] for d in doc] == [BIASED]
    assert len(doc[0]["false_positives"]) == expected.n_fp
    top = doc[0]["groups"][0]
    assert {"layer", "neurons", "bias_score", "fp_flip", "tp_flip", "z_fp_flip", "random_fp_flip_mean"} <= top.keys()
    assert (top["layer"], top["neurons"]) == (expected.groups[0].layer, list(expected.groups[0].channels))
    assert top["bias_score"] == pytest.approx(expected.groups[0].bias_score, abs=1e-9)


def test_negative_control_world_without_the_planted_bias(unbiased):
    """Same generator, same seed, every class on every background equally often: the
    debugger finds no group over the threshold in any class."""
    world, by_class = unbiased.world, unbiased.by_class
    assert world.bias.train_rate == world.bias.other_rate
    scores = []
    for name, (_, result) in sorted(by_class.items()):
        _print_ranking(name, result, n=2)
        scores.append((max((e.bias_score for e in result.groups), default=0.0), name))
    print("highest bias score per class without a planted bias: " + ", ".join(f"{n} {s:.3f}" for s, n in sorted(scores, reverse=True)))
    assert all(score < BIAS_THRESHOLD for score, _ in scores)


# ----------------------------------------------------------------------------- counterfactual ground truth

MIN_MADE = 5  # background-made false positives needed to call a class background-biased (a pattern, not an anecdote)


def _background_made(run: Debugged, name: str) -> tuple[int, int]:
    """``(false positives, background-made ones)`` of one class, by swapping backgrounds.

    An image of another class predicted as ``name`` is background-made when its object on a
    fresh draw of its own background is still predicted ``name`` and on some other
    background is not: the background, not the object, decided it. Counted over the whole
    ``val`` split (the images the debugger scores), from the model's own predictions.
    """
    from neurflow.ingest.demo.world import image_background, swap_background

    world, paths = run.world, run.paths
    target = world.classes.index(name)
    made, fps = 0, 0
    for i in ((run.preds == target) & (run.labels != target)).nonzero().flatten().tolist():
        fps += 1
        p = run.predict_arrays([swap_background(world, paths[i], bg, seed=i)[0] for bg in world.background_concepts])
        own = world.background_concepts.index(image_background(world, paths[i]))
        changed = [bg for j, bg in enumerate(world.background_concepts) if j != own and p[j] != target]
        is_made = p[own] == target and bool(changed)
        made += is_made
        print(f"  {name} FP {paths[i]} on {world.background_concepts[own]}: " + " ".join(f"{bg}->{world.classes[q]}" for bg, q in zip(world.background_concepts, p)) + ("  background-made" if is_made else ""))
    return fps, made


def _true_positive_loss(run: Debugged) -> dict[str, dict[str, float]]:
    """Per class and background: of the class's true positives on *other* backgrounds, the
    fraction no longer predicted as the class when their object is pasted on this one."""
    from neurflow.ingest.demo.world import image_background, swap_background

    world, paths = run.world, run.paths
    out: dict[str, dict[str, float]] = {}
    for target, name in enumerate(world.classes):
        tps = ((run.preds == target) & (run.labels == target)).nonzero().flatten().tolist()
        out[name] = {}
        for bg in world.background_concepts:
            moved = [i for i in tps if image_background(world, paths[i]) != bg]
            p = np.array(run.predict_arrays([swap_background(world, paths[i], bg, seed=i)[0] for i in moved]))
            out[name][bg] = float(np.mean(p != target))
    return out


def _check_flags_against_counterfactuals(run: Debugged) -> dict[str, tuple[int, int, bool, float]]:
    rows = {}
    for name in run.world.classes:
        fps, made = _background_made(run, name)
        biased = made >= MIN_MADE and made >= fps / 2
        result = run.by_class.get(name, (None, None))[1]
        top = max((e.bias_score for e in result.groups), default=0.0) if result is not None else 0.0
        rows[name] = (fps, made, biased, top)
    print(f"{run.root.name}: class: false positives, background-made, background-biased, top bias score")
    for name, (fps, made, biased, top) in rows.items():
        print(f"  {name}: {fps} FP, {made} background-made, biased {biased}, top score {top:.3f}")
    for name, (_, _, biased, top) in rows.items():
        assert biased == (top >= BIAS_THRESHOLD), f"{name}: counterfactually biased {biased}, top bias score {top:.3f}"
    return rows


def test_flags_match_the_counterfactual_ground_truth(debugged):
    """The debugger flags exactly the classes whose false positives the background makes:
    bee (planted) and leaf (its mirror image, learnt: off-flower bees are called leaf)."""
    rows = _check_flags_against_counterfactuals(debugged)
    assert {n for n, r in rows.items() if r[2]} >= {BIASED}
    assert not rows["fish"][2] and not rows["kite"][2] and not rows["ladybug"][2]


def test_leaf_false_positives_are_bees_that_flowers_turn_back_into_bees(debugged):
    """Why leaf is flagged: its false positives are bees off flowers; on flowers the model
    calls the same objects bee; its flagged groups show backgrounds, not leaves."""
    from neurflow.ingest.demo.world import swap_background

    world, (circuit, result) = debugged.world, debugged.by_class["leaf"]
    fps = result.image_ids[result.n_tp : result.n_tp + result.n_fp]
    assert fps and all(i.startswith(f"{BIASED}/") for i in fps)
    preds = np.array(debugged.predict_arrays([swap_background(world, f"val/{i}", CONCEPT, seed=k)[0] for k, i in enumerate(fps)]))
    bee_rate = float(np.mean(preds == world.classes.index(BIASED)))
    print(f"leaf's {len(fps)} false positives on {CONCEPT}: {bee_rate:.2f} predicted {BIASED}")
    assert bee_rate >= 0.9
    # and leaf's own predictions lean on the background: moved onto flowers, many real leaves
    # stop being leaf, far more than any class loses on any background
    loss = _true_positive_loss(debugged)
    for name, per_bg in loss.items():
        print(f"{name} true positives moved onto another background, fraction no longer {name}: " + ", ".join(f"{b} {v:.2f}" for b, v in per_bg.items()))
    others = max(v for name, per_bg in loss.items() if name != "leaf" for v in per_bg.values())
    assert loss["leaf"][CONCEPT] >= 0.3 and loss["leaf"][CONCEPT] > 2 * others
    flagged = [e for e in result.groups if e.bias_score >= result.threshold]
    assert flagged
    for e in flagged:
        shares, background = _group_shares(world, circuit, e)
        print(f"leaf {e.layer} g{e.index} bias {e.bias_score:.3f}: exemplars background {background:.2f}, leaf {shares['leaf']:.2f}; fp_flip {e.fp_flip:.3f} tp_flip {e.tp_flip:.3f}")
        assert background >= 0.8 and shares["leaf"] <= 0.2


def _group_shares(world, circuit, evidence) -> tuple[dict[str, float], float]:
    """Concept shares of a ranked group's exemplar patches, and their background total."""
    group = next(g for g in circuit.groups if (g.layer, g.index) == (evidence.layer, evidence.index))
    shares = _exemplar_concepts(world, circuit, group)
    return shares, sum(shares[b] for b in world.background_concepts)


def test_every_flagged_group_shows_more_background_than_object(debugged):
    world, flagged = debugged.world, 0
    for name, (circuit, result) in sorted(debugged.by_class.items()):
        for e in result.groups:
            if e.bias_score < result.threshold:
                continue
            flagged += 1
            shares, background = _group_shares(world, circuit, e)
            print(f"{name} {e.layer} g{e.index} bias {e.bias_score:.3f}: exemplars background {background:.2f}, object {shares[name]:.2f}")
            assert background > shares[name]
    assert flagged >= 1


def test_negative_control_has_no_background_biased_class(unbiased):
    rows = _check_flags_against_counterfactuals(unbiased)
    assert not any(r[2] for r in rows.values())


def _atlas_purity(run: Debugged) -> dict[str, tuple[int, int, float]]:
    """Per layer: semantic groups, concepts, and the fraction of semantic groups whose concept's
    majority ground-truth concept (of the groups' exemplar patches) is their own."""
    from collections import Counter

    from neurflow.atlas import build_atlas
    from neurflow.ingest.cli_demo import demo_request
    from neurflow.ingest.pipeline import find_artifacts, read_artifact

    circuits = {c.class_index: c for c, _ in run.by_class.values()}
    for d in find_artifacts([demo_request(run.root).out]):
        c = read_artifact(d)[0]
        circuits.setdefault(c.class_index, c)  # classes the debugger skipped (no false positives)
    atlas = build_atlas(list(circuits.values()))
    sgs = {(c.class_index, sg.neuron, sg.index): (c, sg) for c in circuits.values() for sg in c.semantic_groups}
    by_concept: dict[tuple[str, int], list[str]] = defaultdict(list)
    for a in atlas.assignments:
        c, sg = sgs[(a.class_index, a.neuron, a.semantic_group)]
        shares = _exemplar_concepts(run.world, c, sg)
        by_concept[(a.neuron.layer, a.concept)].append(max(shares, key=shares.get))
    out = {}
    for layer in sorted({k for k, _ in by_concept}):
        groups = [v for (ly, _), v in by_concept.items() if ly == layer]
        n = sum(len(v) for v in groups)
        out[layer] = (n, len(groups), sum(Counter(v).most_common(1)[0][1] for v in groups) / n)
    return out


@pytest.mark.parametrize("world_name", ["debugged", "unbiased"])
def test_atlas_concepts_are_pure_in_ground_truth_concepts(world_name, request):
    """Concepts of the cross-class atlas mostly hold one ground-truth concept: in every layer
    with many semantic groups, at least 70% sit in a concept whose majority is their own."""
    purity = _atlas_purity(request.getfixturevalue(world_name))
    for layer, (n, k, p) in purity.items():
        print(f"{world_name} atlas {layer}: {n} semantic groups, {k} concepts, purity {p:.2f}")
    big = {layer: p for layer, (n, _, p) in purity.items() if n >= 50}
    assert big and all(p >= 0.7 for p in big.values())
