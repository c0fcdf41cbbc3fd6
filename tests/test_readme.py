"""The README and the docs: their code runs, their numbers are true, their links lead somewhere."""

import math
import re
from pathlib import Path

import pytest
import torch

from vidgen_nb import VAE, Config, Discriminator, WeightDeltas, WeightPredictor3DCNN, count_parameters

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()
TRAINING = (ROOT / "docs" / "training.md").read_text()


def test_the_readme_is_an_entrance():
    assert len(README.splitlines()) <= 200
    first_screen = "\n".join(README.splitlines()[:40])
    for words in ("**The question it asks:**", "**The current answer", "make train", "make test"):
        assert words in README and README.index(words) < len(first_screen) + 200, words


def test_every_local_link_of_the_readme_and_docs_leads_to_a_file():
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), (page, target)


def test_the_cli_reference_is_current():
    from vidgen_nb.cli_reference import reference

    assert (ROOT / "docs" / "cli.md").read_text() == reference(), \
        "docs/cli.md is stale: python -m vidgen_nb.cli_reference > docs/cli.md"


def test_no_python_file_under_docs():
    assert not list((ROOT / "docs").rglob("*.py"))


def test_readme_api_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = re.search(r"## The API in 15 lines\n\n```python\n(.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 16
    scope = {}
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["x"].shape == (4, 3, 16, 16) and scope["score"].shape == (4,)
    assert scope["trainer"].step == 5 and "swd" in scope["figures"]


def test_api_example_runs():
    code = re.search(r"# The API\n\n```python\n(.*?)```", API, re.S).group(1)
    scope = {}
    torch.manual_seed(0)
    exec(compile(code, "docs/api.md", "exec"), scope)
    assert scope["score"].shape == (16,) and scope["x_patched"].shape == (16, 3, 128, 128)


@pytest.mark.parametrize("name", ["tiny", "cpu", "seed"])
def test_parameter_table(name):
    row = re.search(rf"^\| `{name}` \|.*$", API, re.M).group(0)
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
                     TRAINING, re.S).group(1)
    scope = {}
    exec(compile(code, "docs/training.md", "exec"), scope)
    assert scope["trainer"].step == 50 and (tmp_path / "runs/nb/checkpoint.pt").is_file()


def test_make_train_figures_match_the_preset():
    cfg = Config.preset("cpu")
    assert f"{cfg.train.steps:,}\nsteps of the `cpu` preset" in README or \
        f"{cfg.train.steps:,} steps of the `cpu` preset" in README.replace("\n", " ")
    assert f"every {cfg.train.checkpoint_every} steps" in README
    assert f"batch {cfg.batch_size}, {cfg.model.num_frames}-frame videos" in README
