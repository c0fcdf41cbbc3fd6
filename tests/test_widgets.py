"""Widgets driven from code, no browser: controls change what they show."""

from pathlib import Path

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
    assert explorer.play.repeat  # Play loops


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
    assert explorer.label is None  # unconditional: no class menu, and no class taken
    with pytest.raises(ValueError, match="label=1: this model is unconditional"):
        DeltaExplorer(trainer.generator, trainer.fixed_z[:1], label=1)
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


def test_latent_explorer_of_the_generator_shows_what_it_generates(trainer):
    explorer = LatentExplorer(trainer.generator_ema, dims=3)
    explorer.dims[1].value = 1.5
    with torch.no_grad():
        expected = trainer.generator_ema.generate(explorer.z.clone(), seed=0)[0]
        base = trainer.generator_ema.vae.decode(explorer.z.clone())[0]
    assert torch.equal(explorer.image, expected)
    assert not torch.equal(explorer.image, base)  # the trained delta is in the picture


def test_dashboard_curves_gain_points_as_steps_run(trainer):
    dashboard = TrainingDashboard()
    trainer.callback = dashboard.update
    before = len([r for r in trainer.history if "critic" in r])
    trainer.train(20)
    trainer.callback = None
    assert dashboard.points == before + 2  # tiny logs every 10 steps
    assert f"step {trainer.step}" in dashboard.status.value and dashboard.grid.renders == 2


# ---------------------------------------------------------------- notebook helpers


def test_asked_to_train_the_notebooks_train_the_tiny_preset(tmp_path, monkeypatch, capsys):
    from vidgen_nb.config import FAST_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(FAST_ENV, "0")
    trainer = load_or_train(None, steps=2, progress=False)  # without a run: tests/test_shipped.py
    assert trainer.step == 2 and "trained the tiny preset for 2 steps" in capsys.readouterr().out


def test_a_loaded_model_comes_with_its_runs_figures(tmp_path, monkeypatch, capsys):
    from vidgen_nb.config import Config, FAST_ENV
    from vidgen_nb.notebook import last_evaluation, quality_figures
    from vidgen_nb.trainer import Trainer

    run = tmp_path / "runs" / "main"
    trainer = Trainer(Config.preset("tiny"), out=run, progress=False)
    trainer.train(2)
    figures = trainer.evaluate()
    trainer.save_checkpoint(run / "checkpoint.pt")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(FAST_ENV, "0")
    loaded = load_or_train()
    assert last_evaluation(loaded) == figures == quality_figures(loaded)  # read, not measured again
    assert f"loaded {Path('runs/main/checkpoint.pt')}: 16 px, step 2, seed 0" in capsys.readouterr().out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == len(trainer.history)  # not written


def test_execute_notebooks_needs_the_trained_model(tmp_path, monkeypatch):
    from vidgen_nb.notebook import execute_notebooks

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="run `make train` first"):
        execute_notebooks([tmp_path / "x.ipynb"])


def test_videos_play_inline_without_the_network():
    from vidgen_nb.media import html_video, show_gif

    video = torch.rand(2, 4, 3, 8, 8)
    gif = show_gif(video, fps=4, scale=2)
    assert gif.format == "gif" and gif.data[:6] == b"GIF89a"
    html = html_video(video[0], fps=4).data
    assert "http" not in html and "<link" not in html and "▶" in html


def test_committed_notebooks_show_the_trained_model():
    """Stored outputs come from make train's model (make notebooks), not from fast mode."""
    import json

    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        texts = ["".join(o.get("text", "")) for c in code for o in c["outputs"] if o["output_type"] == "stream"]
        assert all(c["execution_count"] for c in code), f"{path.name}: committed unexecuted"
        assert not any("trained the tiny preset" in t or "fast mode" in t for t in texts), path.name
        if any("load_or_train()" in "".join(c["source"]) for c in code):
            assert any(t.startswith("loaded ../runs/main/checkpoint.pt: 32 px") for t in texts), path.name
        assert "widgets" not in nb["metadata"], f"{path.name}: widget state stored"


def test_latent_explorer_of_a_conditional_model_draws_the_class_chosen():
    from vidgen_nb import Config
    from vidgen_nb.trainer import Trainer

    trainer = Trainer(Config.preset("tiny", num_classes=4), progress=False)
    trainer.train(2)
    names = trainer.dataset.classes
    explorer = LatentExplorer(trainer.generator_ema, dims=2, classes=names)
    assert [label for label, _ in explorer.label.options] == list(names)
    shown = []
    for k in (2, 0):
        explorer.label.value = k
        with torch.no_grad():
            expected = trainer.generator_ema.generate(explorer.z.clone(), torch.tensor([k]), seed=0)[0]
        assert torch.equal(explorer.image, expected)
        shown.append(explorer.image)
    assert not torch.equal(*shown)  # the class reaches the picture
    with pytest.raises(ValueError, match=r"classes=\['a'\]: this model has 4 classes"):
        LatentExplorer(trainer.vae, classes=["a"])
    with pytest.raises(ValueError, match="unconditional"):
        LatentExplorer(load_or_train(None, steps=1, progress=False).vae, classes=["a"])


def test_notebook_pictures_load_where_make_lab_serves_only_notebooks():
    """A markdown picture must lie under notebooks/: `make lab` serves nothing above it."""
    import json
    import re

    folder = Path(__file__).resolve().parents[1] / "notebooks"
    outside = []
    for path in sorted(folder.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", "".join(cell["source"])):
                if re.match(r"[a-z]+:", target):
                    continue  # attachment: or data: pictures travel inside the notebook
                picture = (folder / target).resolve()
                if folder not in picture.parents or not picture.is_file():
                    outside.append(f"{path.name}: {target}")
    assert not outside, outside
