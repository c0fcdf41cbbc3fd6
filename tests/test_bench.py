"""The benchmark runs and reports every figure; its reference computes the same thing.

Speed itself is never asserted here (machines are noisy): `python -m vidgen_nb.bench`
reports it as ratios measured in one run.
"""

import json
import math
import subprocess
import sys

import pytest
import torch

from vidgen_nb import Config
from vidgen_nb.bench import LOSSES, TARGETS, same_losses
from vidgen_nb.profiling import iteration_flops, iteration_flops_by_op, operator_profile, profile_table
from vidgen_nb.reference import ReferenceGenerator, ReferenceTrainer
from vidgen_nb.trainer import Trainer


def test_quick_bench_prints_a_table_and_every_figure_as_json():
    out = subprocess.run([sys.executable, "-m", "vidgen_nb.bench", "--quick"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["preset"] == "tiny" and figures["device"] == "cpu"
    for key in TARGETS:
        assert math.isfinite(figures[key]) and figures[key] > 0, key
        assert key in figures
    assert figures["iteration_flops"] > 0 and figures["peak_memory_bytes"] > 0
    assert figures["guided_cost"] > 0 and "with the critic-guided video" in out.stdout
    assert set(figures["losses_fast_vs_reference"]) == set(LOSSES)
    table = "\n".join(lines[:-1])
    assert "| overhead: full / without predictor |" in table and "<= 1.3" in table


def test_the_profile_accounts_for_the_whole_iteration_by_operator():
    trainer = Trainer(Config.preset("tiny"), progress=False)
    ops, groups, seconds = operator_profile(trainer, iterations=2)
    assert seconds > 0 and math.isclose(sum(g["share"] for g in groups), 1.0)
    assert [g["name"] for g in groups][-1] == "everything else"
    convolutions = {g["name"]: g for g in groups if g["name"].startswith("convolutions")}
    assert all(g["self_s"] > 0 and g["gflop_per_s"] > 0 for g in convolutions.values())
    assert [r["self_s"] for r in ops] == sorted((r["self_s"] for r in ops), reverse=True)
    assert sum(iteration_flops_by_op(trainer).values()) == iteration_flops(trainer)
    table = profile_table(ops, groups, seconds, 1e11)
    assert "| convolutions, backward |" in table and f"`{ops[0]['name']}`" in table


def test_bad_option_exits_2_naming_it():
    out = subprocess.run([sys.executable, "-m", "vidgen_nb.bench", "--repeats", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--repeats 0" in out.stderr


@pytest.mark.parametrize("delta_mode", ["per_sample", "batch_mean"])
def test_reference_generates_the_same_images(delta_mode):
    cfg = Config.preset("tiny", delta_mode=delta_mode)
    fast, reference = Trainer(cfg, progress=False), ReferenceTrainer(cfg, progress=False)
    with torch.no_grad():  # give the zero-initialised head some weights first
        for a, b in zip(fast.predictor.head[-1].parameters(), reference.predictor.head[-1].parameters()):
            a.normal_(0, 0.1)
            b.copy_(a)
    z = fast.vae.sample_z(5)
    x_fast, d_fast = fast.generator.generate(z, seed=3, return_delta=True)
    x_ref, d_ref = reference.generator.generate(z, seed=3, return_delta=True)
    assert torch.allclose(d_fast, d_ref, atol=1e-5)
    assert torch.allclose(x_fast, x_ref, atol=1e-5)
    assert (x_fast - fast.vae.decode(z)).abs().max() > 1e-3  # the deltas did change the images


def test_same_losses_catches_a_difference(monkeypatch):
    cfg = Config.preset("tiny")
    pairs = same_losses(cfg, "cpu", tol=1e-3)
    assert all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3) for a, b in pairs.values())
    original = ReferenceGenerator.generate

    def darker(self, z, **kw):  # a reference that gets the images wrong
        x, delta = original(self, z, **{**kw, "return_delta": True})
        return (x * 0.5, delta) if kw.get("return_delta") else x * 0.5

    monkeypatch.setattr(ReferenceGenerator, "generate", darker)
    with pytest.raises(AssertionError, match="disagree"):
        same_losses(cfg, "cpu", tol=1e-3)
