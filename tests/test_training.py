"""The trainer through the Python API and the command line: files, exact resume, guards."""

import json
import subprocess
import sys

import pytest
import torch

from vidgen_nb import Config, builtin_dataset
from vidgen_nb.train import main
from vidgen_nb.checkpoint import load_checkpoint
from vidgen_nb.device import pick_device
from vidgen_nb.evaluation import generate_fixed
from vidgen_nb.generator import Generator
from vidgen_nb import step
from vidgen_nb.step import learning_rate
from vidgen_nb.stopping import NonFiniteLossError
from vidgen_nb.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


def tiny(**overrides):
    return Config.preset("tiny", log_every=1, checkpoint_every=2, sample_every=2, swd_images=16,
                         **overrides)


def params(trainer):
    nets = {"vae": trainer.vae, "critic": trainer.critic, "predictor": trainer.predictor}
    return {f"{k}.{n}": p.detach().clone() for k, net in nets.items() for n, p in net.named_parameters()}


def stopped_and_resumed(cfg, data, folder):
    """A run of ``cfg`` trained 2 steps into ``folder``, reloaded, and trained 2 more."""
    first = Trainer(cfg, data=data, out=folder, progress=False)
    first.train(2)
    del first
    resumed = Trainer.from_checkpoint(folder / "checkpoint.pt", data=data, progress=False)
    resumed.train(2)
    return resumed


def test_python_api_run_writes_files_and_finite_metrics(tmp_path, data):
    trainer = Trainer(tiny(), data=data, out=tmp_path / "run", progress=False)
    before = params(trainer)
    swd0 = trainer.measure_swd()
    records = trainer.train(4)
    assert trainer.step == 4 and [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert all(torch.isfinite(torch.tensor(v)) for v in r.values())
    after = params(trainer)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"vae", "critic", "predictor"}  # base weights and predictor both learn
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"checkpoint.pt", "config.json", "metrics.jsonl", "samples"} <= files
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 0, "swd": swd0} and len(lines) == 5
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4


def test_plain_baseline_without_predictor(data):
    trainer = Trainer(tiny(use_predictor=False), data=data, progress=False)
    trainer.train(2)
    assert trainer.predictor is None and "delta_rms" not in trainer.history[-1]


@pytest.mark.parametrize("in_memory, precision", [(True, "fp32"), (False, "fp32"), (True, "bf16")])
def test_resume_is_exact(tmp_path, data, in_memory, precision):
    cfg = tiny(in_memory=in_memory, num_workers=1)
    straight = Trainer(cfg, data=data, progress=False, precision=precision)
    straight.train(6)

    first = Trainer(cfg, data=data, out=tmp_path / "r", progress=False, precision=precision)
    first.train(3)
    first.save_checkpoint(tmp_path / "r" / "mid.pt")
    del first
    resumed = Trainer.from_checkpoint(tmp_path / "r" / "mid.pt", data=data, progress=False,
                                      precision=precision)
    assert resumed.step == 3
    resumed.train(3)

    a, b = params(straight), params(resumed)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    trainer = Trainer(tiny(), data=data, out=tmp_path, progress=False)
    trainer.train(2)  # checkpoint at step 2
    with torch.no_grad():
        trainer.critic.score.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"critic loss is nan at step 3.*last good checkpoint"):
        trainer.train(3)
    kept = load_checkpoint(tmp_path / "checkpoint.pt")
    assert kept["step"] == 2 and torch.isfinite(kept["critic"]["score.weight"]).all()


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(None).type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="device='banana'"):
        pick_device("banana")


# ---------------------------------------------------------------- command line


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vidgen_nb.train", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_run_and_resume(tmp_path, data):
    out = tmp_path / "run"
    res = cli("--preset", "tiny", "--steps", "3", "--data", str(data), "--out", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "done: step 3" in res.stdout and "SWD" in res.stdout
    for name in ("checkpoint.pt", "metrics.jsonl", "samples.png", "losses.png", "videos.gif"):
        assert (out / name).is_file(), name
        assert f"wrote {out / name}" in res.stdout

    again = cli("--preset", "tiny", "--steps", "3", "--data", str(data), "--out", str(out))
    assert again.returncode == 2 and "already holds a run" in again.stderr

    more = cli("--steps", "5", "--data", str(data), "--out", str(out), "--resume", "auto", "--quiet")
    assert more.returncode == 0, more.stderr
    assert "resuming" in more.stdout and "done: step 5" in more.stdout
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 5


@pytest.mark.parametrize("args, words", [
    (["--steps", "many"], ["--steps", "invalid int value: 'many'"]),
    (["--image-size", "30"], ["--image-size", "image_size=30", "multiple of 4"]),
    (["--batch-size", "0"], ["--batch-size", "batch_size=0"]),
    (["--frames", "-2"], ["--frames", "num_frames=-2"]),
    (["--n-critic", "0"], ["--n-critic", "n_critic=0"]),
    (["--preset", "huge"], ["--preset", "invalid choice: 'huge'"]),
    (["--targets", "decoder.nope"], ["--targets", "decoder.nope", "available", "decoder.out.weight"]),
    (["--delta-mode", "mean"], ["--delta-mode", "invalid choice"]),
    (["--device", "banana"], ["device='banana'"]),
    (["--resume", "missing.pt"], ["--resume", "missing.pt does not exist"]),
    (["--data", "no_such_folder"], ["--data", "no_such_folder does not exist"]),
])
def test_cli_bad_options_exit_2_with_one_clear_line(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--preset", "tiny", "--steps", "1", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("vidgen-train: error:")
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "o" / "checkpoint.pt").exists()


def test_cli_bad_option_in_a_real_process(tmp_path):
    res = cli("--preset", "tiny", "--image-size", "30", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "vidgen-train: error: --image-size: image_size=30: the 2 blocks of widths halve it 2 "
        "times, so it must be a multiple of 4 (see --help)"]


def test_precision_bf16_on_cpu_trains_in_bfloat16(data):
    auto = Trainer(tiny(), data=data, progress=False)
    assert auto.precision == "fp32"  # auto: bf16 on CUDA only
    bf16 = Trainer(tiny(), data=data, progress=False, precision="bf16")
    seen = []
    hook = bf16.critic.score.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    stats = bf16.train_step()
    hook.remove()
    assert torch.bfloat16 in seen  # the critic really ran in bf16
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in bf16.vae.parameters())  # weights stay float32
    with pytest.raises(ValueError, match=r"precision='fp16': expected one of \('auto', 'fp32', 'bf16'\)"):
        Trainer(tiny(), data=data, progress=False, precision="fp16")


@pytest.mark.parametrize("param", ["dense", "channel", "lora"])
def test_bf16_on_a_cpu_keeps_every_delta_kind_finite(param):
    # On a CPU with bf16 instructions seed 2 of the tiny preset on the built-in data went
    # NaN at step 8 (oneDNN's channels-last Conv3d backward), and channel deltas refused
    # bf16 features.
    trainer = Trainer(Config.preset("tiny", seed=2, delta_param=param), progress=False, precision="bf16")
    trainer.train(20)  # raises NonFiniteLossError on a NaN
    assert trainer.step == 20
    assert all(torch.isfinite(p).all() for p in trainer.generator.parameters())


def test_auto_precision_is_bf16_on_cuda_and_float32_elsewhere():
    from vidgen_nb import device as dev

    assert dev.resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert dev.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert dev.resolve_precision("auto", torch.device("mps")) == "fp32"
    assert dev.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert dev.resolve_precision("fp32", torch.device("cuda")) == "fp32"


LEVERS = dict(ema_decay=0.9, augment="color,translation,cutout", recon_sigma=0.0,
              recon_through_generator=True, adversarial_recon=True, delta_param="channel",
              delta_targets=("decoder.up.0.*", "decoder.out.*"))


@pytest.mark.parametrize("param, pool, depth", [("channel", "max", 1), ("lora", "avg", 2)])
def test_every_quality_lever_trains_and_resumes_exactly(tmp_path, data, param, pool, depth):
    cfg = tiny(**{**LEVERS, "delta_param": param, "critic_pool": pool, "decoder_convs": depth,
                  "critic_convs": depth, "critic_mbstd": depth > 1,
                  "decoder_upsample": "resize" if depth > 1 else "transposed",
                  "decoder_norm": "pixel" if depth > 1 else "none",
                  # up.0 is then the Linear's PixelNorm, which has no weights
                  "delta_targets": ("decoder.up.*" if depth > 1 else "decoder.up.0.*", "decoder.out.*")})
    straight = Trainer(cfg, data=data, progress=False)
    straight.train(4)
    resumed = stopped_and_resumed(cfg, data, tmp_path / "r")
    a, b = params(straight), params(resumed)
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    for x, y in zip(straight.generator_ema.parameters(), resumed.generator_ema.parameters()):
        assert torch.allclose(x, y, atol=1e-6)
    assert all(torch.isfinite(torch.tensor(v)) for v in resumed.history[-1].values())


def test_the_learning_rate_falls_over_the_run_s_end_and_a_resumed_run_follows_it(tmp_path, data):
    cfg = tiny(steps=4, lr_decay=0.75)  # the last 3 of 4 steps: lr, 2/3, 1/3 of it
    lr = cfg.train.lr
    assert [learning_rate(cfg.train, s) for s in range(6)] == \
        pytest.approx([lr, lr, lr * 2 / 3, lr / 3, lr / 3, lr / 3])
    assert learning_rate(tiny(steps=4).train, 3) == lr  # 0: constant
    straight = Trainer(cfg, data=data, progress=False)
    straight.train(3)
    rates = [g["lr"] for o in (straight.opt_g, straight.opt_d) for g in o.param_groups]
    assert rates == pytest.approx([lr * 2 / 3] * len(rates))  # the third step's, both networks
    straight.train(1)
    a, b = params(straight), params(stopped_and_resumed(cfg, data, tmp_path / "r"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    constant = Trainer(tiny(steps=4), data=data, progress=False)
    constant.train(4)
    assert max((a[k] - p).abs().max().item() for k, p in params(constant).items()) > 1e-4


@pytest.mark.parametrize("through_generator", [True, False])
def test_the_critic_judges_reconstructions_when_asked(data, through_generator):
    trainer = Trainer(tiny(adversarial_recon=True, recon_through_generator=through_generator),
                      data=data, progress=False)
    trainer.train(1)
    seen = []
    hook = trainer.critic.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    real, y = trainer._real_batch()
    torch.manual_seed(5)
    step.critic_step(trainer.parts, real, y, trainer.config.train)
    half = len(real) // 2
    fakes = seen[0][len(real):]  # real and fake go through the critic as one batch
    torch.manual_seed(5)  # the same draws again: the samples, then the reconstructions
    with torch.no_grad():
        samples = trainer.generator.generate(trainer.vae.sample_z(len(real) - half))
        recon = trainer.generator.reconstruct(real[len(real) - half:])[0]
    assert torch.allclose(fakes, torch.cat([samples, recon]), atol=1e-6)
    seen.clear()
    # The generator's term covers samples and reconstructions.
    step.generator_step(trainer.parts, *trainer._real_batch(), trainer.config.train)
    hook.remove()
    assert [len(x) for x in seen] == [2 * len(real)]


def test_the_averaged_generator_follows_the_trained_one_and_samples_come_from_it(data, tmp_path):
    trainer = Trainer(tiny(ema_decay=0.5), data=data, out=tmp_path / "run", progress=False)
    assert trainer.generator_ema is not trainer.generator
    assert not any(p.requires_grad for p in trainer.generator_ema.parameters())
    before = [p.clone() for p in trainer.generator_ema.parameters()]
    trainer.train(1)  # step 0 -> 1 uses decay min(0.5, 1/10): ema = 0.1 ema + 0.9 trained
    for old, new, live in zip(before, trainer.generator_ema.parameters(), trainer.generator.parameters()):
        assert torch.allclose(new, 0.1 * old + 0.9 * live, atol=1e-6)
    trainer.train(2)  # decay now 0.5: the average lags the trained weights
    lagging = [not torch.equal(e, p) for e, p in zip(trainer.generator_ema.parameters(),
                                                      trainer.generator.parameters())]
    assert any(lagging)
    with torch.no_grad():
        expected = generate_fixed(trainer.generator_ema, trainer.fixed_z[:4], seed=trainer.config.seed)[0]
    assert torch.equal(trainer.samples(4), expected)
    trainer.save_checkpoint(tmp_path / "run" / "checkpoint.pt")
    loaded = Generator.from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    for x, y in zip(loaded.parameters(), trainer.generator_ema.parameters()):
        assert torch.equal(x, y)


def test_without_averaging_the_averaged_generator_is_the_trained_one(data):
    trainer = Trainer(tiny(ema_decay=0.0), data=data, progress=False)
    assert trainer.generator_ema is trainer.generator
    assert trainer.state_dict()["generator_ema"] is None


def test_evaluate_logs_every_quality_figure(data, tmp_path):
    trainer = Trainer(tiny(), data=data, out=tmp_path / "run", progress=False)
    trainer.train(1)
    record = trainer.evaluate()
    assert set(record) == {"step", "swd", "swd_floor", "delta_spread", "delta_min_cos", "swd_mean_delta",
                           "swd_base", "kl_per_dim", "active_dims", "recon_rms", "recon_swd",
                           "shapes_named", "shape_counts", "shapes_named_recon",
                           "shapes_named_real", "shapes_named_unseen",
                           "base_shapes_named",  # built-in data: judged, pass 1 too
                           "critic_score", "critic_score_base", "swd_walk", "critic_score_walk",
                           "walk_shapes_named", "swd_prior_walk", "critic_score_prior_walk",
                           "prior_walk_shapes_named"}  # the critic's figures and its walk's
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1]) == record
