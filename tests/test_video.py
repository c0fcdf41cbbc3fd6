"""Synthetic video: small smooth changes, seeded, batched, in [0, 1]; GIF and filmstrip."""

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vidgen_nb.config import VideoConfig
from vidgen_nb.media import save_gif
from vidgen_nb.plots import plot_filmstrip
from vidgen_nb.reference import reference_video
from vidgen_nb.video import synthetic_video


@pytest.fixture
def images():
    torch.manual_seed(0)
    # Smooth images (blurred noise) like a decoder's output, not pixel noise.
    return F.avg_pool2d(torch.rand(4, 3, 40, 40), 5, stride=1, padding=2,
                        count_include_pad=False)[..., 4:36, 4:36]


def test_shape_range_and_first_frame(images):
    video = synthetic_video(images, 8, seed=1)
    assert video.shape == (4, 8, 3, 32, 32)
    assert 0 <= video.min() and video.max() <= 1
    assert torch.allclose(video[:, 0], images, atol=1e-5)  # frame 0 is the image


def test_deterministic_under_a_seed(images):
    assert torch.equal(synthetic_video(images, 6, seed=3), synthetic_video(images, 6, seed=3))
    assert not torch.equal(synthetic_video(images, 6, seed=3), synthetic_video(images, 6, seed=4))


def test_changes_are_small_and_grow_smoothly(images):
    video = synthetic_video(images, 8, seed=2)
    step = (video[:, 1:] - video[:, :-1]).abs().mean(dim=(2, 3, 4))  # (B, T-1)
    drift = (video - video[:, :1]).abs().mean(dim=(2, 3, 4))  # (B, T)
    assert (step < 0.05).all()  # each frame differs a little from the one before
    assert (step.max(1).values < 2.5 * step.min(1).values).all()  # no jumps
    assert (drift[:, 1:] > drift[:, :-1]).all()  # the change from frame 0 keeps growing


def test_every_change_can_be_switched_off(images):
    still = VideoConfig(noise=0, shift=0, zoom=0, rotation=0, brightness=0)
    video = synthetic_video(images, 5, still, seed=0)
    assert torch.allclose(video, images[:, None].expand_as(video), atol=1e-5)


def test_all_frames_in_one_batched_resample(images, monkeypatch):
    calls = []
    original = F.grid_sample
    monkeypatch.setattr(F, "grid_sample",
                        lambda *a, **k: calls.append((a[0], a[1].shape)) or original(*a, **k))
    synthetic_video(images, 8, seed=0)
    (source, grid_shape), = calls  # one resampling for every frame of every video
    assert source.data_ptr() == images.data_ptr()  # read in place, not copied per frame
    assert grid_shape == (4, 8 * 32, 32, 2)


def test_same_video_as_the_frame_by_frame_reference(images):
    for cfg in (VideoConfig(), VideoConfig(noise=0.2, shift=6, zoom=0.3, rotation=20, brightness=0.5)):
        for seed in (0, 1):
            assert torch.allclose(synthetic_video(images, 6, cfg, seed=seed),
                                  reference_video(images, 6, cfg, seed=seed), atol=1e-4)


def test_detach_option(images):
    x = images.clone().requires_grad_()
    assert not synthetic_video(x, 3, seed=0).requires_grad
    video = synthetic_video(x, 3, VideoConfig(detach=False), seed=0)
    video.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="expected \\(B, C, H, W\\)"):
        synthetic_video(torch.rand(3, 8, 8), 4)
    with pytest.raises(ValueError, match="num_frames=0"):
        synthetic_video(torch.rand(1, 3, 8, 8), 0)


def test_gif_round_trip(tmp_path, images):
    video = synthetic_video(images, 6, seed=0)
    one = save_gif(video[0], tmp_path / "one.gif", fps=10, scale=2)
    many = save_gif(video, tmp_path / "many.gif")
    with Image.open(one) as gif:
        assert gif.n_frames == 6 and gif.size == (64, 64) and gif.info["duration"] == 100
    with Image.open(many) as gif:
        assert gif.n_frames == 6 and gif.size == (4 * 34 + 2, 34 + 2)  # 4 side by side, padded


def test_filmstrip_has_a_row_per_video_and_a_column_per_frame(images):
    fig = plot_filmstrip(synthetic_video(images, 5, seed=0), max_videos=3, title="strip")
    assert len(fig.axes) == 3 * 5 and fig.axes[4].get_title() == "t=4"
