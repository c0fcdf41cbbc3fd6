"""--precision auto: bf16 where the CPU has it and a start check passes, else float32."""

import pytest
import torch

from vidgen_nb import Config, builtin_dataset, precision
from vidgen_nb.precision import bf16_trial, choose_precision, cpu_bf16_flags
from vidgen_nb.train import main

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return builtin_dataset(tmp_path_factory.mktemp("data"), per_class=4, size=16)


def test_the_cpu_s_bf16_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 avx512f\n\nflags : x\n")
    assert cpu_bf16_flags(str(info)) == ["amx_bf16"]
    info.write_text("flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_bf16_flags(str(info)) == []
    assert cpu_bf16_flags(str(tmp_path / "absent")) == []


def test_what_is_asked_for_is_taken_and_auto_is_fp32_on_a_cpu_without_a_trial():
    cfg = Config.preset("tiny")
    assert choose_precision("bf16", cfg, CPU) == ("bf16", "asked for")
    assert choose_precision("fp32", cfg, CPU) == ("fp32", "asked for")
    chosen, why = choose_precision("auto", cfg, CPU, try_bf16=False)
    assert chosen == "fp32" and "try_bf16" in why


@pytest.mark.parametrize("flags, trouble, chosen, words", [
    ([], None, "fp32", "no bf16 instructions"),
    (["avx512_bf16"], "the critic loss became nan", "fp32", "avx512_bf16, but bf16 failed its start "
                                                          "check: the critic loss became nan"),
    (["avx512_bf16", "amx_bf16"], None, "bf16", "avx512_bf16, amx_bf16 and bf16 passed"),
])
def test_auto_on_a_cpu_follows_its_flags_and_the_trial(monkeypatch, flags, trouble, chosen, words):
    tried = []
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: flags)
    monkeypatch.setattr(precision, "bf16_trial", lambda cfg, device: tried.append(cfg) or trouble)
    got, why = choose_precision("auto", Config.preset("tiny"), CPU)
    assert got == chosen and words in why
    assert len(tried) == (1 if flags else 0)  # no trial where there is nothing to try


def test_the_trial_passes_bf16_that_trains_soundly_and_leaves_the_random_stream():
    torch.manual_seed(5)
    before = torch.get_rng_state()
    assert bf16_trial(Config.preset("tiny"), CPU) is None
    assert torch.equal(torch.get_rng_state(), before)


def test_the_trial_catches_a_resume_that_is_not_exact(monkeypatch):
    def load_without_random_state(parts, state):
        for name in precision.SNAPSHOT:
            getattr(parts, name).load_state_dict(state[name])

    monkeypatch.setattr(precision, "_load", load_without_random_state)
    trouble = bf16_trial(Config.preset("tiny"), CPU)
    assert trouble and "differs from an uninterrupted one by" in trouble


def test_the_trial_catches_losses_that_are_not_finite(monkeypatch):
    build = precision.build_parts

    def poisoned(*args, **kwargs):
        parts = build(*args, **kwargs)
        with torch.no_grad():
            parts.critic.score.weight.fill_(float("nan"))
        return parts

    monkeypatch.setattr(precision, "build_parts", poisoned)
    assert bf16_trial(Config.preset("tiny"), CPU) == "the critic loss became nan within a few steps"


def test_the_run_says_which_precision_ran_and_why(tmp_path, data, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: ["avx512_bf16"])
    assert main(["--preset", "tiny", "--steps", "2", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    said = capsys.readouterr().out
    assert "training on cpu in bf16 (this CPU has avx512_bf16 and bf16 passed its start check)" in said
    assert "images/s in bf16, SWD" in said
