"""Generated videos: latent walk, delta sweep, feedback; export; the vidgen-video command."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.checkpoint import load_checkpoint, save_atomic
from vidgen_nb.generated_video import delta_sweep, feedback_video, latent_walk, slerp
from vidgen_nb.generator import Generator
from vidgen_nb.media import save_gif
from vidgen_nb.render import main
from vidgen_nb.trainer import Trainer


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    data = builtin_dataset(root / "data", per_class=4, size=16)
    trainer = Trainer(Config.preset("tiny", log_every=5), data=data, out=root / "run", progress=False)
    trainer.train(10)  # enough for the predictor's head to leave zero
    return root / "run" / "checkpoint.pt"


@pytest.fixture(scope="module")
def model(checkpoint):
    return Generator.from_checkpoint(checkpoint)


@pytest.mark.parametrize("make", [
    lambda m, s: latent_walk(m, 2, 6, seed=s),
    lambda m, s: latent_walk(m, 2, 6, seed=s, use_delta=False, loop=False),
    lambda m, s: delta_sweep(m, 2, 6, seed=s),
    lambda m, s: feedback_video(m, 2, 6, seed=s)[0],
])
def test_shape_range_and_seed(model, make):
    a, b, c = make(model, 0), make(model, 0), make(model, 1)
    assert a.shape == (2, 6, 3, 16, 16)
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_slerp_endpoints_and_norm():
    z0, z1 = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(slerp(z0, z1, torch.zeros(3)), z0, atol=1e-5)
    assert torch.allclose(slerp(z0, z1, torch.ones(3)), z1, atol=1e-5)
    u0, u1 = z0 / z0.norm(dim=1, keepdim=True), z1 / z1.norm(dim=1, keepdim=True)
    mid = slerp(u0, u1, torch.full((3,), 0.5))
    assert torch.allclose(mid.norm(dim=1), torch.ones(3), atol=1e-5)  # stays on the sphere


def test_latent_walk_frames_change_smoothly(model):
    video = latent_walk(model, 2, 24, seed=0, use_delta=False)
    step = (video[:, 1:] - video[:, :-1]).abs().mean(dim=(2, 3, 4))
    assert step.max() < 0.1 and step.min() > 0


def test_delta_sweep_at_scale_zero_is_the_base_decode(model):
    video = delta_sweep(model, 3, 8, seed=2)
    z = torch.randn(3, model.vae.latent_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = model.vae.decode(z)
    # s_0 = 0 adds exact zeros; only the batch size differs (24 vs 3 decodes), which
    # may change the convolutions' summation order in the last bits.
    assert torch.allclose(video[:, 0], base, atol=1e-6, rtol=0)
    assert not torch.equal(video[:, 2], base)  # s_2 > 0 changes it
    flat = delta_sweep(model, 3, 8, seed=2, amplitude=0.0)
    assert torch.allclose(flat, base[:, None].expand_as(flat), atol=1e-6, rtol=0)


def test_feedback_with_a_zero_predictor_is_constant():
    cfg = Config.preset("tiny")
    trainer = Trainer(cfg, data=None, progress=False)  # untrained: the head is zero
    video, stats = feedback_video(trainer.generator, 2, 7, seed=0)
    assert torch.equal(video, video[:, :1].expand_as(video))
    assert stats["delta_ratio"].abs().max() == 0 and stats["change"].abs().max() == 0


def test_feedback_stats_and_damping(model):
    video, stats = feedback_video(model, 2, 8, seed=0)
    assert stats["delta_ratio"].shape == stats["change"].shape == (2, 8)
    assert (stats["delta_ratio"][:, 1:] > 0).all()
    expected = (video[:, 1:] - video[:, :-1]).abs().mean(dim=(2, 3, 4))
    assert torch.allclose(stats["change"][:, 1:], expected)
    with pytest.raises(ValueError, match="damping=1.0"):
        feedback_video(model, 1, 3, damping=1.0)


def test_gif_of_a_generated_video_round_trips(tmp_path, model):
    path = save_gif(delta_sweep(model, 2, 5), tmp_path / "sweep.gif", fps=5, scale=3)
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (3 * (2 * 18 + 2), 3 * 20)


# ---------------------------------------------------------------- the command


def test_command_writes_a_gif(tmp_path, checkpoint, capsys):
    out = tmp_path / "fb.gif"
    assert main(["--checkpoint", str(checkpoint), "--mode", "feedback", "--frames", "5",
                 "--videos", "2", "--fps", "10", "--out", str(out)]) == 0
    assert "||s delta||/||theta||" in capsys.readouterr().out
    with Image.open(out) as gif:  # Pillow merges identical frames, adding their durations
        durations = [gif.seek(k) or gif.info["duration"] for k in range(gif.n_frames)]
    assert sum(durations) == 5 * 100  # 5 frames at 10 fps


def test_command_rejects_missing_and_mismatched_checkpoints(tmp_path, checkpoint, capsys):
    assert main(["--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "none.pt does not exist" in capsys.readouterr().err
    state = load_checkpoint(checkpoint)
    state["config"]["model"]["latent_dim"] = 12  # weights are for latent_dim 8
    save_atomic(state, tmp_path / "mismatch.pt")
    assert main(["--checkpoint", str(tmp_path / "mismatch.pt")]) == 2
    err = capsys.readouterr().err
    assert "do not fit its own config" in err and "size mismatch" in err
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main(["--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "is not a vidgen_nb checkpoint" in capsys.readouterr().err


def test_command_in_a_real_process(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vidgen_nb.render", "--checkpoint",
                          str(tmp_path / "missing.pt")], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("vidgen-video: error: --checkpoint:")
