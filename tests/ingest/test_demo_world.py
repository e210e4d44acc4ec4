"""The demo world (procedural images, concept maps, planted bias) and the demo CNN's cache.

Tiny worlds in temporary folders; the only training is one epoch on 100 images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurflow.ingest.demo import model as demo_model
from neurflow.ingest.demo.world import (
    BACKGROUNDS,
    CLASSES,
    WorldInfo,
    concept_fractions,
    concept_map,
    concept_maps,
    generate_world,
    image_background,
    list_images,
    load_world,
    swap_background,
)
from neurflow.ingest.errors import ArtifactError, InputError

N_TRAIN, N_VAL = 20, 10


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WorldInfo:
    return generate_world(tmp_path_factory.mktemp("world"), seed=0, n_train=N_TRAIN, n_val=N_VAL)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- generation


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = _files(generate_world(tmp_path / "a", seed=3, n_train=3, n_val=2).root)
    b = _files(generate_world(tmp_path / "b", seed=3, n_train=3, n_val=2).root)
    c = _files(generate_world(tmp_path / "c", seed=4, n_train=3, n_val=2).root)
    assert a == b
    assert a.keys() == c.keys()
    pngs = [k for k in a if k.endswith(".png")]
    assert len(pngs) == 5 * (3 + 2)
    assert all(a[k] != c[k] for k in pngs)
    assert a["concepts_train.npz"] != c["concepts_train.npz"]


def test_reuses_a_current_world_and_regenerates_a_different_one(tmp_path: Path) -> None:
    root = tmp_path / "w"
    generate_world(root, seed=0, n_train=2, n_val=1)
    (root / "unrelated.txt").write_text("kept")
    stamp = (root / "world.json").stat().st_mtime_ns
    png = root / "train" / "bee" / "00000.png"
    png.write_bytes(b"marker: not rewritten on reuse")
    generate_world(root, seed=0, n_train=2, n_val=1)
    assert (root / "world.json").stat().st_mtime_ns == stamp
    assert png.read_bytes() == b"marker: not rewritten on reuse"

    info = generate_world(root, seed=0, n_train=3, n_val=1)
    assert info.n_train == 3
    assert png.read_bytes().startswith(b"\x89PNG")
    assert len(list((root / "train" / "bee").glob("*.png"))) == 3
    assert (root / "unrelated.txt").read_text() == "kept"


def test_world_json_round_trips(world: WorldInfo) -> None:
    meta = json.loads((world.root / "world.json").read_text())
    assert meta["planted_bias"] == {"class": "bee", "concept": "flowers", "train_rate": 0.9, "other_rate": 0.05}
    assert load_world(world.root) == world
    assert world.classes == CLASSES == tuple(sorted(CLASSES))
    assert world.concepts == CLASSES + BACKGROUNDS
    assert world.counts == {"train": dict.fromkeys(CLASSES, N_TRAIN), "val": dict.fromkeys(CLASSES, N_VAL)}


def test_bad_inputs_raise_project_errors(tmp_path: Path, world: WorldInfo) -> None:
    with pytest.raises(ArtifactError, match="generate_world"):
        load_world(tmp_path)
    with pytest.raises(InputError, match="n_train"):
        generate_world(tmp_path, n_train=0)
    with pytest.raises(InputError, match="not an image"):
        concept_map(world, "train/bee/99999.png")
    with pytest.raises(InputError, match="unknown split"):
        list_images(world, "test")


# ----------------------------------------------------------------------------- layout and maps


def test_imagefolder_loads_both_splits(world: WorldInfo) -> None:
    from torchvision.datasets import ImageFolder

    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        ds = ImageFolder(str(world.split_dir(split)))
        assert tuple(ds.classes) == world.classes
        assert len(ds) == n * len(world.classes)
        assert [Path(p).relative_to(world.root).as_posix() for p, _ in ds.samples] == [r for r, _ in list_images(world, split)]
        image, label = ds[0]
        assert image.size == (64, 64) and image.mode == "RGB" and label == 0


def test_concept_maps_match_images_and_hold_the_object(world: WorldInfo) -> None:
    for split in ("train", "val"):
        maps = concept_maps(world, split)
        assert sorted(maps) == sorted(r for r, _ in list_images(world, split))
        for rel, cls in list_images(world, split):
            cmap = maps[rel]
            with Image.open(world.root / rel) as image:
                assert cmap.shape == (image.height, image.width) and cmap.dtype == np.uint8
            ids = set(np.unique(cmap).tolist())
            assert world.concept_id(cls) in ids
            backgrounds = {world.concepts[i] for i in ids} & set(world.background_concepts)
            assert backgrounds == {image_background(world, rel)}
            assert ids == {world.concept_id(cls), world.concept_id(image_background(world, rel))}
            assert 0.005 < float(np.mean(cmap == world.concept_id(cls))) < 0.6


def test_swap_background_keeps_the_object_and_redraws_the_rest(world: WorldInfo) -> None:
    rel = next(r for r, c in list_images(world, "val") if c == "bee" and image_background(world, r) == "flowers")
    with Image.open(world.root / rel) as f:
        original = np.asarray(f.convert("RGB"))
    cmap = concept_map(world, rel)
    obj = cmap == world.concept_id("bee")
    image, swapped = swap_background(world, rel, "sky", seed=3)
    assert image.shape == original.shape and image.dtype == np.uint8
    np.testing.assert_array_equal(image[obj], original[obj])  # the object, pixel for pixel
    np.testing.assert_array_equal(swapped[obj], cmap[obj])
    assert set(np.unique(swapped[~obj]).tolist()) == {world.concept_id("sky")}
    # the rest is sky: bluer than the flowers it replaced (pink petals on green)
    assert image[~obj][:, 2].mean() > original[~obj][:, 2].mean() + 20
    again, _ = swap_background(world, rel, "sky", seed=3)
    other, _ = swap_background(world, rel, "sky", seed=4)
    np.testing.assert_array_equal(again, image)
    assert not np.array_equal(other[~obj], image[~obj]) and np.array_equal(other[obj], image[obj])
    with pytest.raises(InputError, match="unknown background 'lava'"):
        swap_background(world, rel, "lava")
    with pytest.raises(InputError, match="not an image of the world"):
        swap_background(world, "val/bee/99999.png", "sky")


def _flowers_rate(world: WorldInfo, split: str, cls: str) -> float:
    bgs = [image_background(world, rel) for rel, c in list_images(world, split) if c == cls]
    return bgs.count(world.bias.concept) / len(bgs)


def test_planted_bias_rates_in_train(world: WorldInfo) -> None:
    bias = world.bias
    for cls in world.classes:
        rate = bias.train_rate if cls == bias.class_name else bias.other_rate
        assert _flowers_rate(world, "train", cls) == pytest.approx(round(rate * N_TRAIN) / N_TRAIN)
        assert world.background_counts["train"][cls][bias.concept] == round(rate * N_TRAIN)
    # the rest of each class is spread evenly over the other backgrounds (no other bias)
    for cls in world.classes:
        others = [n for b, n in world.background_counts["train"][cls].items() if b != bias.concept]
        assert max(others) - min(others) <= 1


def test_val_backgrounds_are_uniform(world: WorldInfo) -> None:
    for cls in world.classes:
        bgs = [image_background(world, rel) for rel, c in list_images(world, "val") if c == cls]
        assert {b: bgs.count(b) for b in world.background_concepts} == dict.fromkeys(world.background_concepts, N_VAL // 5)


def test_concept_fractions(world: WorldInfo) -> None:
    rel, cls = list_images(world, "val")[7]
    cmap = concept_map(world, rel)
    whole = concept_fractions(world, rel, (0, 0, 64, 64))
    assert list(whole) == list(world.concepts)
    assert sum(whole.values()) == pytest.approx(1.0)
    assert whole[cls] == pytest.approx(float(np.mean(cmap == world.concept_id(cls))))
    box = concept_fractions(world, world.root / rel, (10.5, 3, 30, 20.2))  # widened to 10..30 x 3..21
    assert sum(box.values()) == pytest.approx(1.0)
    assert box[cls] == pytest.approx(float(np.mean(cmap[3:21, 10:30] == world.concept_id(cls))))
    assert concept_fractions(world, rel, (-10, -10, 100, 100)) == whole  # clipped to the image
    with pytest.raises(InputError, match="empty"):
        concept_fractions(world, rel, (5, 5, 5, 9))


# ----------------------------------------------------------------------------- model


def test_model_shape_and_layer_names() -> None:
    from neurflow.segments import split_model

    torch.manual_seed(0)
    net = demo_model.build_model().eval()
    x = torch.randn(2, 3, 64, 64)
    assert net(x).shape == (2, 5)
    assert list(dict(net.named_children())) == ["block1", "block2", "block3", "block4", "pool", "fc"]
    assert tuple(demo_model.DEMO_LAYERS) == ("fc", "block4", "block3", "block2")
    split = split_model(net, demo_model.DEMO_LAYERS)  # every consecutive cut is valid
    outs = split.extractor()(x)
    shapes = {name: tuple(outs[name].shape) for name in demo_model.DEMO_LAYERS}
    assert shapes == {"fc": (2, 5), "block4": (2, 64, 8, 8), "block3": (2, 64, 8, 8), "block2": (2, 32, 16, 16)}
    assert torch.equal(split.segment("fc")(outs["block4"]), outs["fc"])
    assert len(demo_model.DEMO_MEAN) == len(demo_model.DEMO_STD) == 3
    assert demo_model.build_model(num_classes=3).fc.out_features == 3


def test_training_cache_is_reused_and_invalidated(tmp_path: Path, world: WorldInfo) -> None:
    threads = torch.get_num_threads()
    cache = tmp_path / "model.pt"
    first = demo_model.train_demo_model(world.root, cache, seed=0, epochs=1, quiet=True)
    assert not first.reused and cache.is_file()
    assert torch.get_num_threads() == threads
    sidecar = json.loads(cache.with_suffix(".json").read_text())
    assert sidecar["seed"] == 0 and sidecar["epochs"] == 1
    assert sidecar["world"] == {
        "version": world.version, "seed": world.seed, "n_train": N_TRAIN, "n_val": N_VAL, "bias": {"class_name": "bee", "concept": "flowers", "train_rate": 0.9, "other_rate": 0.05},
        "classes": list(world.classes),
    }
    assert sidecar["val_accuracy"] == first.val_accuracy
    assert set(first.per_class_accuracy) == set(world.classes)
    assert not first.model.training

    again = demo_model.train_demo_model(world.root, cache, seed=0, epochs=1, quiet=True)
    assert again.reused
    assert again.val_accuracy == first.val_accuracy and again.per_class_accuracy == first.per_class_accuracy
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key])

    other = demo_model.train_demo_model(world.root, tmp_path / "other.pt", seed=0, epochs=1, quiet=True)
    for key, value in first.model.state_dict().items():  # deterministic training
        assert torch.equal(value, other.model.state_dict()[key]), key

    sidecar["seed"] = 1
    cache.with_suffix(".json").write_text(json.dumps(sidecar))
    assert not demo_model.train_demo_model(world.root, cache, seed=0, epochs=1, quiet=True).reused


def test_ensure_demo_missing_world_and_bad_epochs(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        demo_model.train_demo_model(tmp_path / "nothing", tmp_path / "m.pt", quiet=True)
    with pytest.raises(InputError, match="epochs"):
        demo_model.train_demo_model(tmp_path / "nothing", tmp_path / "m.pt", epochs=0, quiet=True)


def test_unbiased_world_spreads_every_class_evenly_and_is_not_mistaken_for_the_biased_one(tmp_path: Path) -> None:
    from neurflow.ingest.demo.world import UNBIASED

    biased = generate_world(tmp_path, seed=0, n_train=10, n_val=2)
    assert biased.bias.train_rate == 0.9
    plain = generate_world(tmp_path, seed=0, n_train=10, n_val=2, bias=UNBIASED)  # redrawn, not reused
    assert plain.bias == UNBIASED
    for cls in plain.classes:
        assert set(plain.background_counts["train"][cls].values()) == {2}  # 10 images over 5 backgrounds


def test_lookalike_world_adds_a_hoverfly_with_a_bees_body(tmp_path: Path) -> None:
    """``lookalikes=True`` adds ``hoverfly`` (sorted into the class list, its own concept id),
    is not mistaken for the plain world, and draws a bee-like striped body."""
    from neurflow.ingest.demo.world import BACKGROUNDS, LOOKALIKES, world_classes

    plain = generate_world(tmp_path / "plain", seed=3, n_train=5, n_val=5)
    look = generate_world(tmp_path / "look", seed=3, n_train=5, n_val=5, lookalikes=True)
    assert LOOKALIKES == {"hoverfly": "bee"}
    assert look.classes == world_classes(True) == ("bee", "fish", "hoverfly", "kite", "ladybug", "leaf")
    assert plain.classes == world_classes(False)
    assert look.concepts == look.classes + BACKGROUNDS and look.object_concepts["hoverfly"] == "hoverfly"
    assert sorted(p.name for p in (look.root / "val").iterdir()) == list(look.classes)
    again = generate_world(tmp_path / "look", seed=3, n_train=5, n_val=5)  # same folder, other classes: redrawn
    assert again.classes == plain.classes

    def colours(world, cls: str) -> np.ndarray:
        """Mean RGB of the object's pixels over the class's val images."""
        out = []
        for i in range(5):
            rel = f"val/{cls}/{i:05d}.png"
            obj = concept_map(world, rel) == world.concept_id(cls)
            out.append(np.asarray(Image.open(world.root / rel))[obj].mean(0))
        return np.mean(out, 0)

    look = generate_world(tmp_path / "look", seed=3, n_train=5, n_val=5, lookalikes=True)
    bee, fly, kite = colours(look, "bee"), colours(look, "hoverfly"), colours(look, "kite")
    print(f"object colours: bee {bee.round(1)}, hoverfly {fly.round(1)}, kite {kite.round(1)}")
    assert np.abs(bee - fly).max() < np.abs(bee - kite).max()
