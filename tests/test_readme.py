"""The README's code runs and its numbers are true."""

import math
import re
from pathlib import Path

import pytest
import torch

from vidgen_nb import VAE, Config, Discriminator, WeightDeltas, WeightPredictor3DCNN, count_parameters

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_api_example_runs():
    code = re.search(r"## The API at a glance\n\n```python\n(.*?)```", README, re.S).group(1)
    scope = {}
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["score"].shape == (16,) and scope["x_patched"].shape == (16, 3, 128, 128)


@pytest.mark.parametrize("name", ["tiny", "cpu", "seed"])
def test_parameter_table(name):
    row = re.search(rf"^\| `{name}` \|.*$", README, re.M).group(0)
    numbers = [int(c.replace(",", "")) for c in row.split("|")[3:-1]]
    m = Config.preset(name).model
    vae = VAE(m)
    deltas = WeightDeltas(vae, m.delta_targets)
    predictor = WeightPredictor3DCNN.from_config(m, deltas.WEIGHT_UPDATE_SIZE)
    flat_head = (m.predictor_filters * math.ceil(m.num_frames / 4) * math.ceil(m.image_size / 4) ** 2
                 * deltas.WEIGHT_UPDATE_SIZE)
    assert numbers == [count_parameters(vae), count_parameters(Discriminator(m)),
                       count_parameters(predictor), deltas.WEIGHT_UPDATE_SIZE, flat_head]


def test_trainer_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = re.search(r"From a notebook or script, the same trainer:\n\n```python\n(.*?)```",
                     README, re.S).group(1)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["trainer"].step == 50 and (tmp_path / "runs/nb/checkpoint.pt").is_file()


def test_make_train_figures_match_the_preset():
    cfg = Config.preset("cpu")
    assert f"{cfg.train.steps:,}\nsteps of the `cpu` preset" in README or \
        f"{cfg.train.steps:,} steps of the `cpu` preset" in README.replace("\n", " ")
    assert f"every {cfg.train.checkpoint_every} steps" in README
    assert f"batch {cfg.batch_size}, {cfg.model.num_frames}-frame videos" in README
