"""vidgen-experiment: a tiny study, its results, and a study that is stopped and continued."""

import json
import shlex
import shutil
import signal

import pytest

from vidgen_nb import experiments
from vidgen_nb.arm_runs import StudyInterrupted, run_arm
from vidgen_nb.arms import ARMS, arm_config
from vidgen_nb.experiments import main
from vidgen_nb.report import mean_sd
from vidgen_nb.study import Study
from vidgen_nb.config import Config
from vidgen_nb.trainer import Trainer

TINY = dict(preset="tiny", steps=4, swd_every=2)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two arms x two seeds of the tiny preset, trained once for the tests below."""
    s = Study(tmp_path_factory.mktemp("study") / "s", arms=["full", "no-predictor"], seeds=[0, 1], **TINY)
    s.run(progress=False)
    return s


def test_every_arm_is_a_valid_config_that_changes_what_it_says():
    for arm in ARMS:
        arm_config("tiny", arm, seed=3)  # builds (checks every field)
    assert not arm_config("tiny", "no-predictor", 0).train.use_predictor
    assert arm_config("tiny", "constant-delta", 0).model.delta_source == "constant"
    assert arm_config("tiny", "batch-mean", 0).model.delta_mode == "batch_mean"
    still = arm_config("tiny", "still-video", 0).video
    assert (still.noise, still.shift, still.zoom, still.rotation, still.brightness) == (0, 0, 0, 0, 0)
    assert arm_config("tiny", "channel", 0).model.delta_param == "channel"
    assert arm_config("tiny", "lora", 0).model.delta_param == "lora"
    assert arm_config("tiny", "full", 5) == arm_config("tiny", "full", 0).replace(seed=5)


def test_a_study_writes_each_run_and_a_summary_with_paired_differences(study):
    summary = json.loads((study.out / "results.json").read_text())
    runs = summary["runs"]
    assert [(r["arm"], r["seed"]) for r in runs] == [("full", 0), ("no-predictor", 0),
                                                     ("full", 1), ("no-predictor", 1)]
    for r in runs:
        assert [point[0] for point in r["curve"]] == [0, 2, 4]  # SWD every swd_every steps
        assert r["curve"][-1][2] > 0 and r["train_seconds"] > 0 and r["images_per_s"] > 0
        assert r["swd_floor"] > 0 and r["active_dims"] >= 0
    assert "delta_spread" in runs[0] and "delta_spread" not in runs[1]  # no predictor, no deltas
    by = {(r["arm"], r["seed"]): r["swd"] for r in runs}
    paired = summary["arms"]["no-predictor"]["swd_minus_full"]
    assert paired["per_seed"] == pytest.approx([by["no-predictor", s] - by["full", s] for s in (0, 1)])
    assert summary["arms"]["full"]["swd"]["per_seed"] == pytest.approx([by["full", 0], by["full", 1]])
    assert "--preset tiny --arms full,no-predictor --seeds 0,1 --steps 4" in summary["command"]
    fastest = {a: min(r["train_seconds"] for r in runs if r["arm"] == a) for a in ("full", "no-predictor")}
    for r in runs:  # the faster arm's time; the slower arm's curve read at the step it reached by then
        assert r["equal_time_seconds"] == pytest.approx(min(fastest.values()))
        assert r["step_at_equal_time"] == pytest.approx(4 * min(fastest.values()) / fastest[r["arm"]])
    assert "shapes_named_at_equal_time_minus_full" in summary["arms"]["no-predictor"]
    table = (study.out / "results.md").read_text()
    assert "At equal training time" in table
    assert "| no-predictor |" in table and f"{by['full', 1]:.4f}" in table
    for part in table.split("\n\n"):  # every row of each table has its header's columns
        rows = [line for line in part.splitlines() if line.startswith("|")]
        assert len({line.count("|") for line in rows}) <= 1 and len(rows) in (0, 3, 4)
    passes = table.split("Pass 1 (theta alone)")[1].split("after the critic walk")[0]  # only the arm with a predictor has two passes
    assert "| full |" in passes and "| no-predictor |" not in passes
    for name in ("swd.png", "samples.png", "full/seed_1/samples.png"):
        assert (study.out / name).read_bytes()[:4] == b"\x89PNG"


def test_figures_at_equal_training_time_are_read_off_each_curve():
    from vidgen_nb.report import add_equal_time, value_at

    def run(arm, seed, seconds, named):  # evaluated at steps 0, 10, 20
        return {"arm": arm, "seed": seed, "steps": 20, "train_seconds": seconds, "points": [
            {"step": step, "swd": 1.0 - v, "shapes_named": v, "named_as_asked": v / 2}
            for step, v in zip((0, 10, 20), named)]}

    runs = [run("full", 0, 40.0, [0.0, 0.5, 0.9]), run("fast", 0, 30.0, [0.0, 0.4, 0.6]),
            run("full", 1, 40.0, [0.0, 0.3, 0.7]), run("fast", 1, 90.0, [0.0, 0.2, 0.4]),  # slowed down
            run("fast", 2, 30.0, [0.0, 0.2, 0.8])]
    add_equal_time(runs)
    assert {r["equal_time_seconds"] for r in runs} == {30.0}  # fast's fastest seed: 30 s for 20 steps
    full0, fast0, full1, fast1, _ = runs
    assert full0["step_at_equal_time"] == 15 and full0["shapes_named_at_equal_time"] == pytest.approx(0.7)
    assert full1["shapes_named_at_equal_time"] == pytest.approx(0.5) and full0["swd_at_equal_time"] == pytest.approx(0.3)
    assert fast0["step_at_equal_time"] == fast1["step_at_equal_time"] == 20  # its own end, slowed or not
    assert fast1["named_as_asked_at_equal_time"] == pytest.approx(0.2)
    assert value_at(full0["points"], 25, "swd") is None  # past its end: not made up
    one_arm = [run("full", 0, 40.0, [0.0, 0.5, 0.9])]
    add_equal_time(one_arm)
    assert "equal_time_seconds" not in one_arm[0]


def test_running_a_finished_study_again_trains_nothing(study, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in study.out.glob("*/*/result.json")}
    monkeypatch.setattr(Trainer, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = Study(study.out, arms=["full", "no-predictor"], seeds=[0, 1], **TINY).run(progress=False)
    assert {p: p.stat().st_mtime_ns for p in study.out.glob("*/*/result.json")} == before
    assert [r["swd"] for r in again["runs"]] == [r["swd"] for r in json.loads(
        (study.out / "results.json").read_text())["runs"]]


def test_a_run_stopped_half_way_continues_from_its_checkpoint_as_if_never_stopped(study, tmp_path):
    s = Study(tmp_path / "s", arms=["full"], seeds=[0], **TINY)
    stops = iter([None, signal.SIGTERM])  # let the first stretch of 2 steps run, then stop
    with pytest.raises(StudyInterrupted):
        run_arm(s.folder("full", 0), s.config("full", 0), swd_every=2, report=None,
                stop=lambda: next(stops))
    assert not (s.folder("full", 0) / "result.json").exists()
    assert (s.folder("full", 0) / "checkpoint.pt").exists()
    resumed = s.run(progress=False)["runs"][0]
    straight = json.loads((study.folder("full", 0) / "result.json").read_text())
    assert [p[0] for p in resumed["curve"]] == [0, 2, 4]
    assert resumed["swd"] == pytest.approx(straight["swd"], abs=1e-5)
    assert [p[2] for p in resumed["curve"]] == pytest.approx([p[2] for p in straight["curve"]], abs=1e-5)


def test_the_time_of_steps_trained_before_an_interruption_counts(tmp_path):
    # A run stopped between two measuring points (by a signal) resumes from a checkpoint
    # one step past its last point: that step's time is the checkpoint's, not lost.
    s = Study(tmp_path / "s", arms=["full"], seeds=[0], **TINY)
    first = Trainer(s.config("full", 0), out=s.folder("full", 0), progress=False)
    first.train(1)
    assert first.train_seconds > 0
    first.train_seconds = 1000.0  # as if that step had taken 1,000 s
    first.save_checkpoint(s.folder("full", 0) / "checkpoint.pt")
    result = s.run(progress=False)["runs"][0]
    assert 1000 < result["train_seconds"] < 1000 + 600
    assert [p[0] for p in result["curve"]] == [1, 2, 4]
    assert result["curve"][-1][1] == result["train_seconds"]


def test_a_run_copied_from_another_study_counts_as_this_study_s_arm(study, tmp_path):
    s = Study(tmp_path / "s", arms=["base:", "no-predictor"], seeds=[0], **TINY)
    for arm, mine in (("full", "base"), ("no-predictor", "no-predictor")):  # base: full's config
        shutil.copytree(study.folder(arm, 0), s.folder(mine, 0), ignore=shutil.ignore_patterns(".lock"))
    summary = s.run(progress=False)
    assert [r["arm"] for r in summary["runs"]] == ["base", "no-predictor"]
    assert summary["arms"]["no-predictor"]["swd_minus_base"]["per_seed"] == pytest.approx(
        [study.results()[1]["swd"] - study.results()[0]["swd"]])  # no-predictor, full: seed 0


def test_a_study_given_more_steps_continues_its_runs(study, tmp_path, monkeypatch):
    short = Study(tmp_path / "s", arms=["full"], seeds=[0], **{**TINY, "steps": 2})
    first = short.run(progress=False)["runs"][0]
    trained = []
    monkeypatch.setattr(Trainer, "train", lambda self, n, _train=Trainer.train: trained.append(
        (self.step, n)) or _train(self, n))
    longer = Study(tmp_path / "s", arms=["full"], seeds=[0], **TINY).run(progress=False)["runs"][0]
    assert trained == [(2, 2)]  # from its checkpoint at step 2, not from the start
    straight = json.loads((study.folder("full", 0) / "result.json").read_text())
    assert [p[0] for p in longer["curve"]] == [0, 2, 4] and longer["steps"] == 4
    assert longer["curve"][:2] == [list(p) for p in first["curve"]]  # its records kept
    assert [p[2] for p in longer["curve"]] == pytest.approx([p[2] for p in straight["curve"]], abs=1e-5)
    assert json.loads((tmp_path / "s" / "study.json").read_text())["steps"] == 4


def test_a_study_recorded_elsewhere_goes_on_from_its_results_json(study, tmp_path, monkeypatch, capsys):
    recorded = study.out / "results.json"
    more = tmp_path / "more"  # a new machine: no run folders, one seed more
    trained = []
    monkeypatch.setattr(Trainer, "train", lambda self, n, _train=Trainer.train: trained.append(
        self.config.seed) or _train(self, n))
    assert main(["--out", str(more), "--arms", "full,no-predictor", "--seeds", "0,1,2", "--preset", "tiny",
                 "--steps", "4", "--swd-every", "2", "--quiet", "--restore", str(recorded)]) == 0
    assert "restored 4 finished runs" in capsys.readouterr().err
    assert set(trained) == {2}  # only the new seed trained
    summary = json.loads((more / "results.json").read_text())
    old = {(r["arm"], r["seed"]): r["swd"] for r in json.loads(recorded.read_text())["runs"]}
    assert old == {(r["arm"], r["seed"]): r["swd"] for r in summary["runs"] if r["seed"] < 2}
    assert summary["samples_seed"] == 2  # the one seed whose samples are here
    with pytest.raises(ValueError, match=r"--restore .*other settings \(swd_every\)"):
        Study(tmp_path / "other", arms=["full"], seeds=[0], **{**TINY, "swd_every": 4}).restore(recorded)
    with pytest.raises(ValueError, match="run full seed 0 was made with another config"):
        Study(tmp_path / "other", arms=["full"], seeds=[0], **{**TINY, "steps": 6}).restore(recorded)


def test_runs_in_parallel_processes_give_the_same_results(study, tmp_path):
    s = Study(tmp_path / "p", arms=["full"], seeds=[0, 1], **TINY)
    parallel = s.run(jobs=2, progress=False)["runs"]
    for r in parallel:
        alone = json.loads((study.folder("full", r["seed"]) / "result.json").read_text())
        assert r["swd"] == pytest.approx(alone["swd"], abs=1e-4)


def test_bad_arms_seeds_and_folders_are_named_in_one_line(study, capsys):
    def error(*argv):
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
        assert exit_.value.code == 2
        return capsys.readouterr().err.strip()

    assert error("--arms", "full,nope").startswith(
        "vidgen-experiment: error: --arms: arms ['nope']: expected names among full, no-predictor")
    assert "--seeds: 'a,b': expected comma-separated integers" in error("--seeds", "a,b")
    assert "--steps: steps=0: expected a positive integer" in error("--preset", "tiny", "--steps", "0")
    message = error("--out", str(study.out), "--preset", "tiny", "--steps", "2", "--swd-every", "2",
                    "--arms", "full", "--seeds", "0")
    assert "was made with other settings (steps: folder 4, now 2)" in message
    assert "\n" not in message


def test_a_checkpoint_of_another_config_in_a_run_folder_is_refused(tmp_path):
    s = Study(tmp_path / "s", arms=["full"], seeds=[0], **TINY)
    Trainer(arm_config("tiny", "channel", 0), out=s.folder("full", 0), progress=False).train(1)
    with pytest.raises(ValueError, match="was made with another config than this study's"):
        s.run(progress=False)


def test_the_summary_statistics():
    assert mean_sd([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    mean, sd = mean_sd([5.0])
    assert mean == 5.0 and sd != sd  # one seed: no spread to report (nan)


def test_paired_differences_carry_a_95_percent_interval():
    from vidgen_nb.report import arm_table, interval, t_975

    # Student's t quantiles as printed in tables; past the table, the expansion.
    assert (t_975(1), t_975(4), t_975(30)) == (12.706, 2.776, 2.042)
    assert t_975(40) == pytest.approx(2.021, abs=1e-3) and t_975(120) == pytest.approx(1.980, abs=1e-3)
    low, high = interval([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: 2 -+ 4.303 / sqrt(3)
    assert (low, high) == pytest.approx((2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5))
    runs = [{"arm": arm, "seed": seed, "swd": swd, "shapes_named": 0.5}
            for arm, seed, swd in (("full", 0, 0.10), ("full", 1, 0.20), ("a", 0, 0.15), ("a", 1, 0.21))]
    paired = arm_table(runs, "a")["swd_minus_full"]
    assert paired["per_seed"] == pytest.approx([0.05, 0.01])
    assert paired["ci95"] == pytest.approx(interval([0.05, 0.01]))


def test_pass_2_is_set_against_pass_1_seed_by_seed_and_tabled():
    from vidgen_nb.report import arm_table, interval, markdown_table

    runs = [{"arm": "a", "seed": seed, "swd": 0.1, "swd_base": 0.1 + d, "shapes_named": 0.8,
             "base_shapes_named": 0.8 - d, "named_as_asked": 0.7, "base_named_as_asked": 0.7}
            for seed, d in ((0, 0.02), (1, 0.04), (2, 0.03))] + [{"arm": "full", "seed": 0, "swd": 0.1}]
    table = arm_table(runs, "a")
    assert table["shapes_named_pass2_minus_pass1"]["per_seed"] == pytest.approx([0.02, 0.04, 0.03])
    assert table["swd_pass2_minus_pass1"]["ci95"] == pytest.approx(interval([-0.02, -0.04, -0.03]))
    assert "swd_pass2_minus_pass1" not in arm_table(runs, "full")  # no pass 1 without a predictor
    summary = {"arms": {"a": table, "full": arm_table(runs, "full")}, "baseline": "full",
               "settings": {"preset": "tiny", "steps": 1, "seeds": [0, 1, 2]}, "command": "c"}
    text = markdown_table(summary)
    assert "| a | 0.1300 ± 0.0100 | -0.0300 ± 0.0100 (-0.0548 to -0.0052) |" in text
    assert "| full | " not in text.split("Pass 1")[1]


def test_arms_as_data_a_two_arm_study_of_the_tiny_preset_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "arms"
    assert main(["--out", str(out), "--preset", "tiny", "--steps", "2", "--swd-every", "2", "--seeds", "0",
                 "--arm", "base:", "--arm", "wide:widths=8,32,critic_widths=16,16", "--lr", "5e-4",
                 "--quiet"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert list(summary["arms"]) == ["base", "wide"] and summary["baseline"] == "base"
    wide = Config.from_dict(summary["runs"][1]["config"])
    assert wide.model.widths == (8, 32) and wide.model.critic_widths == (16, 16)
    assert wide.train.lr == 5e-4 and Config.from_dict(summary["runs"][0]["config"]).train.lr == 5e-4
    for run in summary["runs"]:  # every figure of evaluate() at every point of the schedule
        assert [p["step"] for p in run["points"]] == [0, 2]
        assert {"swd", "swd_floor", "recon_rms", "delta_spread", "shapes_named"} <= set(run["points"][-1])
    assert "shapes_named_minus_base" in summary["arms"]["wide"]
    assert "--arm base: --arm wide:widths=8,32,critic_widths=16,16 --set lr=0.0005" in summary["command"]
    assert "| wide |" in capsys.readouterr().out


def test_a_spec_file_makes_the_same_study_and_bad_specs_are_named(tmp_path, capsys):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"preset": "tiny", "steps": 2, "swd_every": 2, "seeds": [0],
                                "set": {"lr": 5e-4}, "arms": {"base": {}, "z4": {"set": {"latent_dim": 4},
                                                                                  "seeds": [0, 1]}}}))
    study = experiments.study_from_args(experiments.build_parser().parse_args(
        ["--spec", str(spec), "--out", str(tmp_path / "s")]))
    assert study.runs() == [("base", 0), ("z4", 0), ("z4", 1)]
    assert study.config("z4", 1).model.latent_dim == 4 and study.config("base", 0).train.lr == 5e-4
    assert f"--spec {spec}" in study.command()
    assert "--set" not in study.command() and "--arm" not in study.command()
    for beside, shown in ((["--baseline", "z4", "--set", "lr=1e-3"], "--set lr=0.001 --baseline z4"),
                          (["--arms", "full"], "--arms full")):  # options beside a spec are recorded
        args = ["--spec", str(spec), "--out", str(tmp_path / "s2"), *beside]
        study = experiments.study_from_args(experiments.build_parser().parse_args(args))
        again = experiments.study_from_args(experiments.build_parser().parse_args(
            shlex.split(study.command())[1:]))
        assert shown in study.command() and "--arm " not in study.command()
        assert (again.arms, again.overrides, again.baseline) == (study.arms, study.overrides, study.baseline)
    spec.write_text(json.dumps({"arms": {"x": {"latent": 4}}}))
    with pytest.raises(SystemExit):
        main(["--spec", str(spec), "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err
    assert err.startswith(f"vidgen-experiment: error: --spec: spec {spec}, arm x: unknown config field(s) ['latent']")
    with pytest.raises(SystemExit):
        main(["--arm", "x:latent_dim=many", "--out", str(tmp_path / "u")])
    assert "--arm: arm x: latent_dim='many': expected an integer" in capsys.readouterr().err


def test_every_recorded_spec_is_a_study_whose_every_run_builds(tmp_path):
    from pathlib import Path

    specs = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").rglob("spec.json"))
    assert len(specs) >= 5
    for spec in specs:
        study = Study.from_spec(tmp_path / spec.parent.name, spec)
        assert study.runs() and all(study.config(a, s).seed == s for a, s in study.runs())


def test_the_critic_walk_is_set_against_the_samples_seed_by_seed_and_tabled():
    from vidgen_nb.report import arm_table, markdown_table

    runs = [{"arm": arm, "seed": seed, "swd": 0.1, "swd_walk": 0.1 + d, "shapes_named": 0.8,
             "walk_shapes_named": 0.8 - d, "named_as_asked": 0.7, "walk_named_as_asked": 0.7 + d,
             "critic_score": 1.0, "critic_score_walk": 1.5}
            for arm in ("a", "b") for seed, d in ((0, 0.02), (1, 0.04), (2, 0.03))]
    runs = [r for r in runs if not (r["arm"] == "b" and r["seed"] == 2)]
    table = arm_table(runs, "a", baseline="b")
    assert table["swd_walk_minus_samples"]["per_seed"] == pytest.approx([0.02, 0.04, 0.03])
    assert table["named_as_asked_walk_minus_samples"]["mean"] == pytest.approx(0.03)
    assert table["critic_score_walk_minus_samples"]["per_seed"] == pytest.approx([0.5] * 3)
    summary = {"arms": {"a": table, "b": arm_table(runs, "b", baseline="b")}, "baseline": "b",
               "settings": {"preset": "tiny", "steps": 1, "seeds": [0, 1, 2]}, "command": "c"}
    walk = markdown_table(summary).split("after the critic walk")[1]
    assert "| a | 0.1000 ± 0.0000 | 0.0300 ± 0.0100 (+0.0052 to +0.0548) |" in walk
    assert "| b | 0.1000 ± 0.0000 | 0.0300 ± 0.0141" in walk  # two seeds: an interval all the same


def test_measured_again_a_run_gains_the_figures_it_lacks_and_must_repeat_the_ones_it_has(study, tmp_path):
    again = Study(tmp_path / "s", arms=["full", "no-predictor"], seeds=[0, 1], **TINY)
    shutil.copytree(study.out, again.out)
    file = again.folder("full", 1) / "result.json"
    result = json.loads(file.read_text())
    kept = {k: result.pop(k) for k in ("swd_prior_walk", "critic_score_walk")}  # as if measured before them
    for k in kept:
        del result["points"][-1][k]
    file.write_text(json.dumps(result))
    assert again.measure_again() == ["critic_score_walk", "swd_prior_walk"]
    result = json.loads(file.read_text())
    assert {k: result[k] for k in kept} == pytest.approx(kept)  # the same checkpoint, the same figures
    assert {k: result["points"][-1][k] for k in kept} == pytest.approx(kept)
    assert again.measure_again() == []
    result["swd"] += 0.01  # a figure that does not repeat: nothing is added to the run
    file.write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"seed_1: measured again, swd is .* against"):
        again.measure_again()
    other = Study(tmp_path / "s", arms=["full:lr=0.001", "no-predictor"], seeds=[0, 1], **TINY)
    with pytest.raises(ValueError, match=r"full/seed_0/result.json was made with another config"):
        other.measure_again()  # refused before anything is measured or written


def test_a_study_pairs_every_arm_against_the_baseline_it_names(study, tmp_path):
    other = Study(tmp_path / "s", arms=["full", "no-predictor"], seeds=[0, 1], baseline="no-predictor", **TINY)
    shutil.copytree(study.out, other.out)
    summary = other.summarise()
    assert summary["baseline"] == "no-predictor" and "swd_minus_no_predictor" in summary["arms"]["full"]
    assert "swd_minus_full" not in summary["arms"]["no-predictor"]
    assert "--baseline no-predictor" in summary["command"]
    with pytest.raises(ValueError, match="baseline='wide': expected one of the study's arms, full, no-predictor"):
        Study(tmp_path / "t", arms=["full", "no-predictor"], seeds=[0], baseline="wide", **TINY)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"baseline": "b", "arms": {"a": {}, "b": {"use_predictor": False}}}))
    assert Study.from_spec(tmp_path / "u", spec, **TINY).baseline == "b"
