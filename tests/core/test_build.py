"""Circuit building (neurflow.build): a planted circuit, the paper's invariants, errors."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest
import torch

from neurflow import (
    CircuitConfig,
    NeuronRef,
    build_circuit,
    concept_overlap,
    knockout_concepts,
    select_class_images,
    split_model,
)
from neurflow.activations import feature_maps, patch_activations
from neurflow.attribution import integrated_gradients

from .nets import (
    PLANTED,
    PLANTED_CHANNELS,
    PLANTED_LAYERS,
    TINY_CONFIG,
    TINY_LAYERS,
    build_tiny,
    needs_cuda,
    planted_images,
    planted_net,
    tiny_cnn,
    tiny_images,
)

# -- the planted circuit -----------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    model = planted_net()
    images = planted_images()
    config = CircuitConfig(tau=3, k=12, steps=16)
    circuit = build_circuit(model, images, 0, list(PLANTED_LAYERS), config, model_name="planted")
    return model, images, circuit


def test_planted_core_neurons_are_found(planted):
    _, _, c = planted
    root = c.core_of(NeuronRef("fc", 0))
    assert root.core[0] == 0  # fc logit 0 reads c2 channel 0 with weight 1, the others with <= 0.2
    for target in c.targets:
        if target.target.layer != "c2":
            continue
        expected = PLANTED[target.target.channel]
        print(f"planted c2:{target.target.channel}: core {target.core} scores {np.round(target.scores, 4).tolist()} "
              f"(expected {sorted(expected)}), best other score {np.delete(target.all_scores, list(expected)).max():.4f}")
        assert set(target.core) == set(expected)
        # the planted channels are far ahead of the 0.02-weight ones
        assert min(target.scores) > 10 * np.delete(target.all_scores, list(expected)).max()
    assert {t.target.channel for t in c.targets if t.target.layer == "c2"} == set(root.core)
    assert c.neurons("c1") == tuple(sorted(NeuronRef("c1", ch) for t in root.core for ch in PLANTED[t]))


def test_knocking_out_the_planted_core_changes_the_concept(planted):
    model, images, c = planted
    target = c.core_of(NeuronRef("c2", 0))
    k = c.config.k
    split = split_model(model, list(PLANTED_LAYERS))

    def overlap(channels) -> float:
        knocked = knockout_concepts(model, split, images, c.patches, "c2", [0], {"c1": list(channels)}, k)[0]
        return concept_overlap(target.concept, knocked)

    assert overlap([]) == 1.0  # nothing knocked out: V_a itself
    core = overlap(target.core)
    rng = np.random.default_rng(0)
    random_sets = [rng.choice(PLANTED_CHANNELS, size=3, replace=False).tolist() for _ in range(24)]
    random = [overlap(s) for s in random_sets]
    print(f"planted c2:0: |V^(knock core) ∩ V| / k = {core:.3f}; random 3-sets: mean {np.mean(random):.3f}, "
          f"min {min(random):.3f}, max {max(random):.3f} over {len(random)} sets")
    assert core < np.mean(random) - 0.3
    assert core <= 0.25
    # sets that miss every planted channel leave the concept (almost) unchanged
    missing = [o for s, o in zip(random_sets, random) if not set(s) & set(PLANTED[0])]
    assert missing and min(missing) >= 0.9


# -- invariants on a tiny random CNN -------------------------------------------------------


def _edges_by_group(c):
    by = defaultdict(list)
    for e in c.edges:
        by[e.parent, e.group].append(e)
    return by


def test_eq4_weights_into_each_semantic_group_sum_to_one(tiny_circuit):
    c = tiny_circuit
    by = _edges_by_group(c)
    assert set(by) == {(sg.neuron, sg.index) for sg in c.semantic_groups if sg.neuron.layer != c.layers[-1]}
    for (parent, group), edges in by.items():
        core = c.core_of(parent).core
        assert [e.child.channel for e in edges] == list(core)
        total = sum(abs(e.weight) for e in edges)
        assert total == pytest.approx(1.0, abs=1e-12) or all(e.weight == 0.0 for e in edges)
        norm = sum(abs(e.importance) for e in edges)
        for e in edges:
            assert e.weight == pytest.approx(e.importance / norm, rel=1e-12)


def test_importance_over_groups_adds_up_to_the_signed_score(tiny_circuit):
    """T(a, s, V_a) = sum_j T(a, s, V_{a,j}): the semantic groups partition V_a (Eq. 2 is a sum)."""
    c = tiny_circuit
    by = _edges_by_group(c)
    for t in c.targets:
        groups = c.semantic_groups_of(t.target)
        for rank, ch in enumerate(t.core):
            parts = [e.importance for j in range(len(groups)) for e in by[t.target, j] if e.child.channel == ch]
            assert len(parts) == len(groups)
            assert sum(parts) == pytest.approx(t.signed[rank], rel=1e-9, abs=1e-12)
        if c.config.aggregate == "eq2":
            assert np.allclose(t.scores, np.abs(t.signed), rtol=1e-12, atol=0)


def test_core_is_the_top_tau_of_all_scores(tiny_circuit):
    c = tiny_circuit
    for t in c.targets:
        assert len(t.core) == min(c.config.tau, len(t.all_scores))
        assert list(t.scores) == sorted(t.scores, reverse=True)
        assert np.allclose(t.all_scores[list(t.core)], t.scores, rtol=1e-6, atol=0)  # all_scores is float32
        rest = np.delete(t.all_scores, list(t.core))
        assert rest.size == 0 or t.all_scores[list(t.core)].min() >= rest.max()
        assert np.all(t.all_scores >= 0)


def test_next_layer_neurons_are_the_union_of_cores(tiny_circuit):
    c = tiny_circuit
    assert [t.target for t in c.targets if t.target.layer == c.layers[0]] == [c.root]
    for upper, lower in zip(c.layers[:-1], c.layers[1:]):
        cores = {NeuronRef(lower, ch) for t in c.targets if t.target.layer == upper for ch in t.core}
        assert set(c.neurons(lower)) == cores
        if lower != c.layers[-1]:
            assert [t.target for t in c.targets if t.target.layer == lower] == sorted(cores)
        assert {sg.neuron for sg in c.semantic_groups if sg.neuron.layer == lower} == cores
        assert all(t.lower_layer == lower for t in c.targets if t.target.layer == upper)


def test_neuron_groups_cover_every_semantic_group_once(tiny_circuit):
    c = tiny_circuit
    for layer in c.layers:
        sgs = {(sg.neuron, sg.index) for sg in c.semantic_groups if sg.neuron.layer == layer}
        groups = c.groups_of(layer)
        assert [g.index for g in groups] == list(range(len(groups)))
        members = [(m.neuron, m.semantic_group) for g in groups for m in g.members]
        assert sorted(members) == sorted(sgs)  # every semantic group in exactly one neuron group
        assert {n for g in groups for n in g.neurons} == set(c.neurons(layer))
        for g in groups:
            want = sorted({p for sg in c.semantic_groups for m in g.members
                           if (sg.neuron, sg.index) == (m.neuron, m.semantic_group) for p in sg.patch_ids})
            assert list(g.patch_ids) == want  # the group concept: union of its semantic groups
            assert set(g.exemplar_ids) <= set(g.patch_ids)
    assert len(c.groups_of(c.layers[0])) == 1  # the root's semantic groups form one group


def test_group_edges_equal_the_recomputed_sums(tiny_circuit):
    c = tiny_circuit
    w = {(e.parent, e.group, e.child): e.weight for e in c.edges}
    want = {}
    for upper, lower in zip(c.layers[:-1], c.layers[1:]):
        for parent in c.groups_of(upper):
            for child in c.groups_of(lower):
                terms = [w[m.neuron, m.semantic_group, s] for m in parent.members for s in child.neurons
                         if (m.neuron, m.semantic_group, s) in w]
                if terms:
                    want[child.layer, child.index, parent.layer, parent.index] = (sum(terms), len(terms))
    got = {(e.child_layer, e.child_index, e.parent_layer, e.parent_index): (e.weight, e.n_edges) for e in c.group_edges}
    assert got.keys() == want.keys()
    for key, (weight, n) in want.items():
        assert got[key][1] == n
        assert got[key][0] == pytest.approx(weight, rel=1e-12, abs=1e-15)
    # every hypertree edge lands in at least one group edge
    assert sum(e.n_edges for e in c.group_edges) >= len(c.edges)


def test_stored_activations_and_metadata(tiny_circuit):
    c = tiny_circuit
    model, images = tiny_cnn(), tiny_images()
    acts = patch_activations(split_model(model, list(TINY_LAYERS)), images, c.patches)
    for layer in c.layers:
        channels, values = c.neuron_activations[layer]
        assert channels.tolist() == [n.channel for n in c.neurons(layer)]
        assert values.dtype == np.float32 and values.shape == (len(c.patches), len(channels))
        assert np.array_equal(values, acts[layer][:, torch.as_tensor(channels)].numpy())
    top = c.core_of(c.root)
    assert np.array_equal(np.argsort(-c.activation(c.root), kind="stable")[: c.config.k], top.concept)
    assert c.layers == TINY_LAYERS and c.class_index == 2 and c.class_name == "two" and c.model_name == "tiny"
    assert c.image_ids == tuple(str(i) for i in range(6)) and len(c.patches) == 6 * 59
    assert c.model_fingerprint.startswith("sha256:") and c.data_fingerprint.startswith("sha256:")


def test_eq2_score_recomputed_by_hand(tiny_circuit):
    """The root's ranking scores from a separate integrated-gradients call, for both aggregates."""
    c = tiny_circuit
    model, images = tiny_cnn(), tiny_images()
    split = split_model(model, list(TINY_LAYERS))
    root = c.core_of(c.root)
    x = feature_maps(split, "c3", images, c.patches, np.array(root.concept))
    attr = integrated_gradients(split.segment("fc"), x, torch.tensor([c.class_index]), steps=c.config.steps)[0].numpy()
    assert np.allclose(root.all_scores, np.abs(attr.sum(0)), rtol=1e-5, atol=1e-8)  # Eq. 2, float32 stored
    abs_mean = build_tiny(dataclasses.replace(TINY_CONFIG, aggregate="abs-mean"))
    assert np.allclose(abs_mean.core_of(abs_mean.root).all_scores, np.abs(attr).mean(0), rtol=1e-5, atol=1e-8)
    # both ran; the rankings use different scores
    differ = [not np.allclose(a.all_scores, b.all_scores) for a, b in zip(c.targets, abs_mean.targets)]
    assert any(differ)


def test_build_restores_training_mode_and_requires_grad():
    model = tiny_cnn().train()
    model.c1[0].weight.requires_grad_(False)
    build_circuit(model, tiny_images(n=2, size=16), 0, ["fc", "c3"], CircuitConfig(tau=2, k=4, steps=2))
    assert model.training and all(m.training for m in model.modules())
    assert not model.c1[0].weight.requires_grad
    assert all(p.requires_grad for name, p in model.named_parameters() if name != "c1.0.weight")


def test_select_class_images():
    model = tiny_cnn()
    images = tiny_images(n=8, size=16)
    with torch.no_grad():
        preds = model(images).argmax(1)
    for cls in range(4):
        assert select_class_images(model, images, cls, batch_size=3).tolist() == torch.nonzero(preds == cls).flatten().tolist()


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tau": 0}, "tau must be >= 1, got 0"),
        ({"k": -1}, "k must be >= 1, got -1"),
        ({"steps": 0}, "steps must be >= 1, got 0"),
        ({"aggregate": "max"}, "aggregate must be one of eq2, abs-mean, got 'max'"),
        ({"method": "simpson"}, "method must be one of riemann_right, .*gausslegendre, got 'simpson'"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CircuitConfig(**kwargs)


def test_config_defaults_and_scales():
    cfg = CircuitConfig(scales=[1, 0.5])
    assert cfg.scales == (1.0, 0.5)
    assert (CircuitConfig().tau, CircuitConfig().k, CircuitConfig().steps) == (16, 50, 50)


@pytest.mark.parametrize(
    "images,kwargs,message",
    [
        (torch.empty(0, 3, 16, 16), {}, r"images must be a non-empty \[I, C, S, S\] tensor, got shape \(0, 3, 16, 16\)"),
        (torch.zeros(3, 16, 16), {}, r"images must be a non-empty \[I, C, S, S\] tensor"),
        (torch.zeros(2, 3, 16, 12), {}, "images must be square, got 16x12"),
        (torch.zeros(2, 3, 16, 16), {"image_ids": ["a"]}, "1 image ids for 2 images"),
        (torch.zeros(2, 3, 16, 16), {"class_index": 4}, "class index 4 is out of range for layer 'fc' with 4 units"),
        (torch.zeros(2, 3, 16, 16), {"class_index": -1}, "class index -1 is out of range"),
        (torch.zeros(2, 3, 16, 16), {"layers": ["fc", "c9"]}, "unknown layer 'c9'"),
    ],
)
def test_build_errors(images, kwargs, message):
    args = {"class_index": 0, "layers": ["fc", "c3"], **kwargs}
    with pytest.raises(ValueError, match=message):
        build_circuit(tiny_cnn(), images, args.pop("class_index"), args.pop("layers"), CircuitConfig(tau=2, k=4, steps=2), **args)


def test_nan_weights_are_reported():
    model = tiny_cnn()
    with torch.no_grad():
        model.c2[0].weight[3, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite activations at layer '(c2|c3|fc)'"):
        build_circuit(model, tiny_images(n=2, size=16), 0, ["fc", "c3", "c2"], CircuitConfig(tau=2, k=4, steps=2))


def test_builds_are_deterministic(tiny_circuit):
    again = build_tiny()
    assert again == tiny_circuit
    for a, b in zip(again.targets, tiny_circuit.targets):
        assert np.array_equal(a.all_scores, b.all_scores)


# -- GPU -----------------------------------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_tiny_build_on_cuda_matches_cpu(tiny_circuit):
    on_gpu = build_tiny(device="cuda")
    assert [t.target for t in on_gpu.targets] == [t.target for t in tiny_circuit.targets]
    for a, b in zip(on_gpu.targets, tiny_circuit.targets):
        assert a.concept == b.concept and a.core == b.core
        assert np.allclose(a.scores, b.scores, rtol=1e-9, atol=1e-12)
    assert len(on_gpu.edges) == len(tiny_circuit.edges)
    for a, b in zip(on_gpu.edges, tiny_circuit.edges):
        assert (a.child, a.parent, a.group) == (b.child, b.parent, b.group)
        assert a.weight == pytest.approx(b.weight, rel=1e-9, abs=1e-12)
    assert on_gpu.model_fingerprint == tiny_circuit.model_fingerprint
    assert on_gpu.data_fingerprint == tiny_circuit.data_fingerprint


# -- speed-only settings do not change the circuit -----------------------------------------


@pytest.mark.parametrize("change", [{"channels_last": False}, {"map_cache_mb": 0}, {"batch_size": 7, "ig_batch": 24}])
def test_speed_settings_leave_the_circuit_unchanged(tiny_circuit, change):
    other = build_tiny(dataclasses.replace(TINY_CONFIG, **change))
    assert [t.core for t in other.targets] == [t.core for t in tiny_circuit.targets]
    assert [t.concept for t in other.targets] == [t.concept for t in tiny_circuit.targets]
    for a, b in zip(other.targets, tiny_circuit.targets):
        np.testing.assert_allclose(a.all_scores, b.all_scores, rtol=1e-4, atol=1e-6)
    assert [g.members for g in other.groups] == [g.members for g in tiny_circuit.groups]


def test_kept_feature_maps_equal_recomputed_ones():
    model = tiny_cnn().eval()
    images = tiny_images(n=3, size=16)
    split = split_model(model, list(TINY_LAYERS))
    from neurflow.patches import make_patch_grid

    grid = make_patch_grid(3, 16, (1.0, 0.5), 0.5)
    maps: dict[str, torch.Tensor] = {}
    lower = list(TINY_LAYERS)[1:]
    acts = patch_activations(split, images, grid, batch_size=4, keep_maps=lower, map_budget_bytes=10**9, maps_out=maps)
    assert set(maps) == set(lower)
    for name in lower:
        ids = np.array([0, 5, len(grid) - 1])
        assert torch.allclose(maps[name][ids], feature_maps(split, name, images, grid, ids, batch_size=2), atol=1e-6)
        assert maps[name].shape[0] == len(grid) == acts[name].shape[0]
    # a budget below one layer's maps keeps nothing
    small: dict[str, torch.Tensor] = {}
    patch_activations(split, images, grid, batch_size=4, keep_maps=lower, map_budget_bytes=16, maps_out=small)
    assert small == {}


# -- reduced-precision integrated gradients ------------------------------------------------


def test_bf16_integrated_gradients_keep_the_core_sets():
    """bfloat16 autocast of the IG passes (on the CPU here) picks the float32 build's cores.

    float32 nets: autocast leaves float64 alone. Pooled over the four classes of the tiny
    CNN and the planted net, the core neuron sets must agree to Jaccard >= 0.95.
    """
    from neurflow.metrics import core_jaccard

    builds = []
    for cls in range(4):
        for precision in ("fp32", "bf16"):
            cfg = dataclasses.replace(TINY_CONFIG, ig_precision=precision)
            builds.append(build_circuit(tiny_cnn().float(), tiny_images().float(), cls, list(TINY_LAYERS), cfg))
    planted_cfg = CircuitConfig(tau=3, k=8, steps=8, max_semantic_groups=3, max_neuron_groups=4)
    for precision in ("fp32", "bf16"):
        cfg = dataclasses.replace(planted_cfg, ig_precision=precision)
        builds.append(build_circuit(planted_net().float(), planted_images().float(), 0, list(PLANTED_LAYERS), cfg))
    pooled_a = {(i, t.lower_layer, s) for i, c in enumerate(builds[0::2]) for t in c.targets for s in t.core}
    pooled_b = {(i, t.lower_layer, s) for i, c in enumerate(builds[1::2]) for t in c.targets for s in t.core}
    assert len(pooled_a & pooled_b) / len(pooled_a | pooled_b) >= 0.95
    for a, b in zip(builds[0::2], builds[1::2]):
        assert core_jaccard(a, b) >= 0.9
        assert b.config.ig_precision == "bf16"
    # bfloat16 did change the scores (the option is not ignored), by bfloat16 rounding only
    diffs = [np.abs(x.all_scores - y.all_scores).max() / np.abs(x.all_scores).max() for a, b in zip(builds[0::2], builds[1::2]) for x, y in zip(a.targets, b.targets)]
    assert 0 < max(diffs) < 0.05


def test_ig_precision_is_stored_only_when_not_the_default(tmp_path):
    from neurflow import load_circuit, save_circuit

    assert "ig_precision" not in CircuitConfig().as_dict()
    assert CircuitConfig(ig_precision="bf16").as_dict()["ig_precision"] == "bf16"
    assert CircuitConfig().as_dict()["scales"] == [1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="ig_precision must be one of fp32, tf32, bf16, got 'fp16'"):
        CircuitConfig(ig_precision="fp16")
    cfg = CircuitConfig(tau=2, k=4, steps=2, ig_precision="tf32")
    circuit = build_circuit(tiny_cnn(), tiny_images(n=2, size=16), 0, ["fc", "c3"], cfg)
    save_circuit(circuit, tmp_path / "a")
    assert '"ig_precision": "tf32"' in (tmp_path / "a" / "circuit.json").read_text()
    assert load_circuit(tmp_path / "a").config == cfg
    default = build_circuit(tiny_cnn(), tiny_images(n=2, size=16), 0, ["fc", "c3"], dataclasses.replace(cfg, ig_precision="fp32"))
    save_circuit(default, tmp_path / "b")
    assert "ig_precision" not in (tmp_path / "b" / "circuit.json").read_text()  # as before the option existed
    assert load_circuit(tmp_path / "b").config.ig_precision == "fp32"
