"""Class images read by parallel decoding processes equal those read in this process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from neurflow.ingest.errors import InputError
from neurflow.ingest.images import default_loader_workers, load_class_images, scan_data
from neurflow.ingest.preprocess import Preprocess


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    cls = tmp_path / "cat"
    cls.mkdir()
    for i in range(11):
        h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(cls / f"img{i:02d}.png")
    (cls / "img05b.png").write_bytes(b"not an image")  # unreadable: skipped and listed
    return scan_data(tmp_path)


PRE = Preprocess(input_size=16, resize=18, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


def test_workers_decode_the_same_images_in_the_same_order(folder):
    here = load_class_images(folder, 0, PRE, num_workers=0)
    assert len(here.ids) == 11 and here.skipped == (("cat/img05b.png", "UnidentifiedImageError"),)
    assert list(here.ids) == sorted(here.ids)
    for workers in (1, 2):
        there = load_class_images(folder, 0, PRE, num_workers=workers)
        assert there.ids == here.ids and there.skipped == here.skipped
        assert torch.equal(there.tensor, here.tensor)
    # no GPU here: pin_memory is a no-op, the values are the same
    assert torch.equal(load_class_images(folder, 0, PRE, num_workers=0, pin_memory=True).tensor, here.tensor)


def test_loader_worker_defaults_and_errors(folder):
    assert default_loader_workers(10) == 0  # small folders decode in this process
    assert 0 <= default_loader_workers(10_000) <= 8
    with pytest.raises(InputError, match="the number of image loader workers must be >= 0, got -1"):
        load_class_images(folder, 0, PRE, num_workers=-1)
