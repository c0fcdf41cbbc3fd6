"""DiffAugment: each transformation does what it says, stays differentiable, and is checked."""

import pytest
import torch

from vidgen_nb.augment import color, cutout, diff_augment, translation
from vidgen_nb.config import Config


def test_empty_policy_is_the_identity():
    x = torch.rand(2, 3, 8, 8)
    assert diff_augment(x, "") is x


def test_translation_moves_content_and_fills_with_zeros():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 16, 16) + 1  # > 0 everywhere, so a zero is a filled pixel
    y = translation(x)  # up to 2 pixels each way at 16 px
    assert y.shape == x.shape
    for i in range(len(x)):  # y is x shifted by some (dy, dx), zeros where it came from outside
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(x[i])
                src = x[i][:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)]
                shifted[:, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)] = src
                found = found or torch.equal(shifted, y[i])
        assert found, i
    assert (y == 0).any()  # some image did move


def test_cutout_zeroes_one_square_of_half_the_size():
    torch.manual_seed(0)
    x = torch.ones(32, 3, 16, 16)
    y = cutout(x)
    zeros = (y[:, 0] == 0).sum(dim=(1, 2))
    assert ((zeros > 0) & (zeros <= 64)).all()  # an 8 x 8 square, cut where it leaves the image
    assert (zeros == 64).any()
    assert torch.equal(y[:, 0], y[:, 2])  # the same square in every channel


def test_color_changes_each_image_by_its_own_amount():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8)
    y = color(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    shift = (y - x).mean(dim=(1, 2, 3))
    assert shift.std() > 0.01


def test_gradients_flow_through_every_transformation():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    diff_augment(x, "color,translation,cutout").sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_augmentation_is_refused_by_name():
    with pytest.raises(ValueError, match=r"augment='color,flip': unknown \['flip'\]"):
        Config.preset("tiny", augment="color,flip")
    with pytest.raises(ValueError, match="augment=3"):
        diff_augment(torch.rand(1, 3, 4, 4), 3)
