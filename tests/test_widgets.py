"""Widgets driven from code, no browser: controls change what they show."""

import pytest
import torch

from vidgen_nb.notebook import load_or_train
from vidgen_nb.widgets import DeltaExplorer, LatentExplorer, TrainingDashboard, VideoExplorer


@pytest.fixture(scope="module")
def trainer():
    return load_or_train(None, steps=30)


def test_video_explorer_frame_slider_and_play(trainer):
    explorer = VideoExplorer(trainer.samples(1)[0], num_frames=6)
    first = explorer.current.png
    explorer.frame.value = 3
    assert explorer.title == "frame 3 of 5" and explorer.current.png != first
    explorer.play.value = 5  # Play is linked to the frame slider
    assert explorer.frame.value == 5 and explorer.title == "frame 5 of 5"


def test_video_explorer_sliders_remake_the_video(trainer):
    explorer = VideoExplorer(trainer.samples(1)[0], num_frames=6)
    before, strip = explorer.video.clone(), explorer.strip.png
    explorer.sliders["shift"].value = 8.0
    assert not torch.equal(explorer.video, before) and explorer.strip.png != strip
    explorer.frames.value = 10
    assert explorer.video.shape[0] == 10 and explorer.frame.max == explorer.play.max == 9
    assert len(explorer.strip.fig.axes) == 10


def test_delta_explorer_scale_zero_is_exactly_the_base(trainer):
    explorer = DeltaExplorer(trainer.generator, trainer.fixed_z[:1])
    explorer.scale.value = 0.0
    assert torch.equal(explorer.patched, explorer.base)
    explorer.scale.value = 1.5
    assert not torch.equal(explorer.patched, explorer.base)
    png = explorer.images.png
    explorer.target.value = "decoder.out.bias"
    assert explorer.images.png != png
    only_bias = explorer.selected_delta()
    assert only_bias[:, explorer.deltas.slices["decoder.out.weight"]].abs().sum() == 0
    assert torch.equal(only_bias[:, explorer.deltas.slices["decoder.out.bias"]],
                       explorer.delta[:, explorer.deltas.slices["decoder.out.bias"]])


def test_latent_explorer_slider_changes_the_image(trainer):
    explorer = LatentExplorer(trainer.vae, dims=4)
    image, renders = explorer.image.clone(), explorer.panel.renders
    explorer.dims[0].value = 2.5 if explorer.dims[0].value < 0 else -2.5
    assert not torch.equal(explorer.image, image) and explorer.panel.renders == renders + 1
    assert explorer.z[0, 0].item() == explorer.dims[0].value
    explorer.seed.value = 7
    assert explorer.panel.renders == renders + 2  # one redraw for a new seed


def test_dashboard_curves_gain_points_as_steps_run(trainer):
    dashboard = TrainingDashboard()
    trainer.callback = dashboard.update
    before = len([r for r in trainer.history if "critic" in r])
    trainer.train(20)
    trainer.callback = None
    assert dashboard.points == before + 2  # tiny logs every 10 steps
    assert f"step {trainer.step}" in dashboard.status.value and dashboard.grid.renders == 2
