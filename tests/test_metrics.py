"""Multi-scale sliced Wasserstein distance."""

import pytest
import torch
import torch.nn.functional as F

from vidgen_nb.metrics import laplacian_pyramid, swd, swd_levels


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)
    # Smooth random images: blurred noise with a per-image colour.
    x = F.avg_pool2d(torch.rand(96, 3, 40, 40), 9, stride=1)
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return (x - lo) / (hi - lo) * 0.7 + torch.rand(96, 3, 1, 1) * 0.3  # in [0, 1]


def test_a_set_against_itself_is_zero(images):
    assert swd(images, images) == 0.0


def test_grows_with_noise(images):
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(images.shape, generator=g)
    values = [swd(images, (images + s * noise).clamp(0, 1)) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)]
    assert values[0] < 0.03  # clamping alone changes little
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_symmetric_and_deterministic(images):
    other = images.flip(-1) * 0.8
    assert swd(images, other, seed=3) == swd(other, images, seed=3)
    assert swd(images, other, seed=3) == swd(images, other, seed=3)
    assert swd(images, other, seed=3) != swd(images, other, seed=4)


def test_levels_say_where_the_distance_is(images):
    blurred = F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    fine, coarse = swd_levels(images, blurred)  # 32 px: one band-pass level, then 16 px
    assert fine > 5 * coarse  # a blur takes away detail, not the shrunk picture
    assert swd(images, blurred) == pytest.approx((fine + coarse) / 2, rel=1e-6)
    assert len(swd_levels(images, blurred, min_size=4)) == 4  # 32, 16, 8 px bands, then 4 px


def test_sees_a_change_of_colour(images):
    assert swd(images, images * 0.5) > 5 * swd(images[:48], images[48:])


def test_pyramid_levels_sum_back_to_the_image():
    x = torch.rand(2, 3, 64, 64)
    levels = laplacian_pyramid(x, min_size=16)
    assert [l.shape[-1] for l in levels] == [64, 32, 16]
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + F.interpolate(rebuilt, size=band.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.allclose(rebuilt, x, atol=1e-5)


def test_mismatched_sizes_are_rejected():
    with pytest.raises(ValueError, match="same C, H, W"):
        swd(torch.rand(4, 3, 16, 16), torch.rand(4, 3, 32, 32))
