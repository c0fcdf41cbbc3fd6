"""The model the kit ships: written from a finished run, small, loaded where no run is,
drawing what its run drew, and refusing to train."""

import json
from pathlib import Path

import pytest
import torch

from vidgen_nb import Config, shipped
from vidgen_nb.checkpoint import load_checkpoint
from vidgen_nb.config import FAST_ENV
from vidgen_nb.notebook import last_evaluation, load_or_train
from vidgen_nb.render import main as video_main
from vidgen_nb.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 4-step tiny run with one evaluation, and the file export() writes from it."""
    root = tmp_path_factory.mktemp("shipped")
    trainer = Trainer(Config.preset("tiny", log_every=1), out=root / "run", progress=False)
    trainer.train(4)
    trainer.evaluate()
    trainer.save_checkpoint(root / "run" / "checkpoint.pt")
    return trainer, shipped.export(root / "run", root / "model.pt")


def test_the_shipped_file_is_the_run_less_what_training_on_needs(exported):
    trainer, path = exported
    state = load_checkpoint(path)
    assert not set(shipped.LEFT_OUT) & set(state)
    assert path.stat().st_size < (trainer.out / "checkpoint.pt").stat().st_size
    assert [(r["step"], "swd" in r) for r in state["history"]] == [(4, True)]  # its evaluation
    assert state["command"] == shipped.COMMAND and state["config"] == trainer.config.to_dict()


def test_the_loaded_model_draws_what_the_run_drew_and_refuses_to_train(exported):
    trainer, path = exported
    loaded = shipped.load(path)
    assert torch.equal(loaded.samples(8), trainer.samples(8))
    assert last_evaluation(loaded) == last_evaluation(trainer) and loaded.step == 4
    with pytest.raises(ValueError, match="keeps no optimiser states.*make train"):
        loaded.train(1)


def test_notebooks_and_videos_use_the_shipped_model_where_no_run_is(exported, tmp_path, monkeypatch, capsys):
    trainer, path = exported
    monkeypatch.setattr(shipped, "SHIPPED", path)
    monkeypatch.setattr("vidgen_nb.render.SHIPPED", path)
    monkeypatch.chdir(tmp_path)  # no runs/main here or above
    monkeypatch.setenv(FAST_ENV, "0")
    loaded = load_or_train(progress=False)
    out = capsys.readouterr().out
    assert "runs/main/checkpoint.pt" in out and "make train" in out and "the model the kit ships" in out
    assert torch.equal(loaded.samples(4), trainer.samples(4))
    assert video_main(["--mode", "latent-walk", "--frames", "2", "--videos", "1"]) == 0
    assert "the shipped model" in capsys.readouterr().err and (tmp_path / "latent-walk.gif").is_file()


def test_a_file_that_is_not_an_export_is_refused_by_name(exported, tmp_path, capsys):
    trainer, _ = exported
    with pytest.raises(ValueError, match="history is missing"):
        shipped.load(trainer.out / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match="nowhere.pt: the shipped model is not there"):
        shipped.load(tmp_path / "nowhere.pt")
    assert shipped.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "Traceback" not in err and not (tmp_path / "m.pt").exists()


def test_the_kit_ships_the_long_run_of_its_spec():
    """The file in the package is the run docs/results/shipped describes, and is small."""
    spec = json.loads((ROOT / "docs/results/shipped/spec.json").read_text())
    state = load_checkpoint(shipped.SHIPPED)
    expected = Config.preset(spec["preset"], steps=spec["steps"], **spec["set"], **spec["arms"]["long"])
    assert Config.from_dict(state["config"]) == expected and state["step"] == spec["steps"]
    assert shipped.SHIPPED.stat().st_size < 5e6
    results = json.loads((ROOT / "docs/results/shipped/results.json").read_text())
    assert last_evaluation(shipped.load())["shapes_named"] == results["runs"][0]["shapes_named"]
