"""A study's results as numbers, a table and figures: what ``vidgen-experiment`` reports.

``summarise(study)`` reads every finished run's ``result.json`` and writes
``results.json`` (settings, command, commit, per-arm statistics, every run),
``results.md`` (the table), ``swd.png`` (SWD and the judge's share against step and
training time) and ``samples.png`` (a grid per arm). Per arm: the mean, sample
standard deviation and per-seed values of each figure, and paired differences
against the baseline arm over the seeds both have.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import subprocess
from pathlib import Path

import torch

from . import __version__
from .evaluation import WALK_STEP, WALK_STEPS
from .files import atomic_write

# Read off each run's curve at the step its arm reaches in the training time the
# fastest arm takes: a comparison at equal compute beside the one at equal steps.
AT_EQUAL_TIME = ("step", "swd", "shapes_named", "named_as_asked")
EQUAL = tuple(f"{key}_at_equal_time" for key in AT_EQUAL_TIME)
# The figures summarised per arm (each run's result.json holds every figure of evaluate()).
FIGURES = ("swd", "shapes_named", "named_as_asked", "as_asked_of_named", "shapes_named_recon",
           "shapes_named_unseen", "unseen_as_class", "recon_rms", "kl_per_dim", "delta_spread",
           "delta_min_cos", "train_seconds", "images_per_s", "equal_time_seconds", *EQUAL,
           "swd_base", "base_shapes_named", "base_named_as_asked", "critic_score", "critic_score_base",
           "swd_walk", "walk_shapes_named", "walk_named_as_asked", "critic_score_walk",
           "swd_prior_walk", "prior_walk_shapes_named", "prior_walk_named_as_asked")
# Within an arm, seed by seed: (name, [(figure, the figure it is set against)], intro,
# and the table's words for the second figure and for the difference).
# Pass 2 (theta + delta: the samples) against pass 1 (theta alone); the samples after the
# critic walk (evaluation.critic_walk) against the samples; the critic walk against the
# prior's walk alone (what the critic's gradient adds to drawing nearer the mode).
WITHIN = (
    ("pass2_minus_pass1",
     [("swd", "swd_base"), ("shapes_named", "base_shapes_named"),
      ("named_as_asked", "base_named_as_asked"), ("critic_score", "critic_score_base")],
     "Pass 1 (theta alone) against pass 2 (theta + the image's delta), the same codes judged alike "
     "(the critic's scores compare within a run, never across runs)", "pass 1", "pass 2 − 1"),
    ("walk_minus_samples",
     [("swd_walk", "swd"), ("walk_shapes_named", "shapes_named"),
      ("walk_named_as_asked", "named_as_asked"), ("critic_score_walk", "critic_score")],
     f"The samples after the critic walk (each noise vector moved {WALK_STEPS} x {WALK_STEP} RMS along "
     "the gradient of D(G(u), y) - ||u||^2 / 2: DDLS's drift, no retraining, no predictor) against the samples",
     "samples", "walk − samples"),
    ("walk_minus_prior_walk",
     [("swd_walk", "swd_prior_walk"), ("walk_shapes_named", "prior_walk_shapes_named"),
      ("walk_named_as_asked", "prior_walk_named_as_asked")],
     "The critic walk against the same walk without the critic (the noise's own density pulling it "
     "toward 0 alone, a truncation): what the critic's gradient adds", "prior walk", "critic − prior walk"),
)
PAIRED = ("swd", "shapes_named", "named_as_asked", *EQUAL[1:])  # against the baseline, seed by seed


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for fewer than two values)."""
    values = list(values)
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


# Student's t, two-sided 95% (the 0.975 quantile), for 1..30 degrees of freedom.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def t_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom: the table up
    to 30, beyond it the Cornish-Fisher expansion around the normal's (error < 0.001)."""
    if df < 1:
        return math.nan
    if df <= len(T_975):
        return T_975[df - 1]
    z = statistics.NormalDist().inv_cdf(0.975)
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(diffs: list[float]) -> tuple[float, float]:
    """The 95% confidence interval of the mean of paired differences (t, n − 1 df)."""
    m, sd = mean_sd(diffs)
    half = t_975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return m - half, m + half


def value_at(points: list[dict], step: float, key: str) -> float | None:
    """``key`` at ``step``, linear between the two evaluations around it; None where
    the run did not get that far or lacks the figure."""
    pairs = [(p["step"], p.get(key)) for p in points]
    for (s0, v0), (s1, v1) in zip(pairs, pairs[1:]):
        if s0 <= step <= s1 and v0 is not None and v1 is not None:
            return v1 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    return None


def add_equal_time(runs: list[dict]) -> None:
    """Give every run ``equal_time_seconds`` and ``<figure>_at_equal_time`` for each of
    ``AT_EQUAL_TIME``: its curve read at the step its arm reaches in the time the
    fastest arm takes for the study's steps. An arm's time per step is that of its
    fastest seed: other programs on the machine only ever add time, so the fastest run
    is the closest to the arm's own cost. In place; nothing for a one-arm study."""
    runs = [r for r in runs if r.get("points") and r.get("train_seconds")]
    per_step = {arm: min(r["train_seconds"] / r["steps"] for r in runs if r["arm"] == arm)
                for arm in dict.fromkeys(r["arm"] for r in runs)}
    if len(per_step) < 2:
        return
    steps = min(r["steps"] for r in runs)
    seconds = min(per_step.values()) * steps
    for r in runs:
        r["equal_time_seconds"] = seconds
        step = min(seconds / per_step[r["arm"]], steps)  # the fastest arm: its last step, not past it
        for key in AT_EQUAL_TIME:
            value = value_at(r["points"], step, key)
            if value is not None:
                r[f"{key}_at_equal_time"] = value


def arm_table(runs: list[dict], arm: str, baseline: str = "full") -> dict:
    """One arm's figures over seeds: mean, sd and per-seed values, and the paired
    differences in ``PAIRED`` against ``baseline`` over the seeds both have
    (``swd_minus_<baseline>``, ``shapes_named_minus_<baseline>``)."""
    mine = {r["seed"]: r for r in runs if r["arm"] == arm}
    table = {"seeds": sorted(mine)}
    for key in FIGURES:
        values = [mine[s].get(key) for s in sorted(mine)]
        if values and all(v is not None for v in values):
            m, sd = mean_sd(values)
            table[key] = {"mean": m, "sd": sd, "per_seed": values}
    if "swd" in table and all("swd_mean_delta" in mine[s] for s in mine):
        m, sd = mean_sd(mine[s]["swd_mean_delta"] - mine[s]["swd"] for s in sorted(mine))
        table["mean_delta_cost"] = {"mean": m, "sd": sd}
    for name, pairs, *_ in WITHIN:  # each pair keyed by its figure's root: swd_pass2_minus_pass1
        for figure, against in pairs:
            if mine and all(figure in r and against in r for r in mine.values()):
                diffs = [mine[s][figure] - mine[s][against] for s in sorted(mine)]
                m, sd = mean_sd(diffs)
                table[f"{_root(figure)}_{name}"] = {"mean": m, "sd": sd, "per_seed": diffs,
                                                    "ci95": interval(diffs) if len(diffs) > 1 else None}
    theirs = {r["seed"]: r for r in runs if r["arm"] == baseline}
    paired = [s for s in sorted(mine) if s in theirs]
    for key in PAIRED if arm != baseline and paired else ():
        if all(key in mine[s] and key in theirs[s] for s in paired):
            diffs = [mine[s][key] - theirs[s][key] for s in paired]
            m, sd = mean_sd(diffs)
            table[f"{key}_minus_{_key(baseline)}"] = {"mean": m, "sd": sd, "per_seed": diffs,
                                                      "seeds": paired, "ci95": interval(diffs)}
    return table


def _key(arm: str) -> str:
    return arm.replace("-", "_")


def _pm(entry: dict | None, digits: int = 4) -> str:
    if not entry:
        return "—"
    sd = "" if math.isnan(entry["sd"]) else f" ± {entry['sd']:.{digits}f}"
    return f"{entry['mean']:.{digits}f}{sd}"


def markdown_table(summary: dict) -> str:
    """The study as a Markdown table: mean ± sd over seeds, per-seed SWD, paired differences."""
    base = summary.get("baseline", "full")
    rows = [f"| arm | SWD (mean ± sd) | SWD per seed | SWD − {base}, paired | shapes named | "
            f"named − {base}, paired | named as asked | as asked − {base}, paired | reconstructions named | unseen reconstructions named | "
            "recon RMS | delta spread | min cosine | mean-delta cost | train s | images/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, t in summary["arms"].items():
        per_seed = ", ".join(f"{v:.4f}" for v in t.get("swd", {}).get("per_seed", []))
        rows.append(f"| {arm} | {_pm(t.get('swd'))} | {per_seed} | {_pm(t.get('swd_minus_' + _key(base)))} | "
                    f"{_pm(t.get('shapes_named'), 2)} | {_pm(t.get('shapes_named_minus_' + _key(base)), 2)} | "
                    f"{_pm(t.get('named_as_asked'), 2)} | {_pm(t.get('named_as_asked_minus_' + _key(base)), 2)} | "
                    f"{_pm(t.get('shapes_named_recon'), 2)} | {_pm(t.get('shapes_named_unseen'), 2)} | "
                    f"{_pm(t.get('recon_rms'), 3)} | "
                    f"{_pm(t.get('delta_spread'), 3)} | {_pm(t.get('delta_min_cos'), 3)} | "
                    f"{_pm(t.get('mean_delta_cost'))} | {_pm(t.get('train_seconds'), 0)} | "
                    f"{_pm(t.get('images_per_s'), 0)} |")
    rows += _equal_time_table(summary) + _passes_table(summary)
    s = summary["settings"]
    return "\n".join([*rows, "", f"Preset {s['preset']}, {s['steps']} steps, seeds {s['seeds']}, "
                      f"on {', '.join(summary.get('devices', [])) or '?'}; "
                      f"SWD against real images (lower is better). Command: `{summary['command']}`"
                      + (f", commit {summary['commit']}" if summary.get("commit") else "") + "."])


def _equal_time_table(summary: dict) -> list[str]:
    """The figures at equal training time, as a second table (none for a one-arm study)."""
    base = _key(summary.get("baseline", "full"))
    arms = {a: t for a, t in summary["arms"].items() if "equal_time_seconds" in t}
    if len(arms) < 2:
        return []
    rows = ["", "At equal training time (each run's curve read, linearly between evaluations, at the "
            "step its arm reaches in the fastest arm's time; an arm's time per step is that of its "
            "fastest seed):", "",
            f"| arm | seconds | steps by then | SWD | SWD − {base}, paired | shapes named | named − {base}, paired | "
            f"named as asked | as asked − {base}, paired |", "|---|---|---|---|---|---|---|---|---|"]
    for arm, t in arms.items():
        cells = [_pm(t.get("equal_time_seconds"), 0), _pm(t.get("step_at_equal_time"), 0)]
        for key, digits in (("swd", 4), ("shapes_named", 2), ("named_as_asked", 2)):
            cells += [_pm(t.get(f"{key}_at_equal_time"), digits),
                      _pm(t.get(f"{key}_at_equal_time_minus_{base}"), digits)]
        rows.append(f"| {arm} | " + " | ".join(cells) + " |")
    return rows


def _root(figure: str) -> str:
    """The figure a within-arm comparison is named by: swd_walk -> swd, prior_walk_shapes_named
    -> shapes_named, critic_score_base -> critic_score."""
    for prefix in ("prior_walk_", "walk_", "base_"):
        figure = figure.removeprefix(prefix)
    for suffix in ("_prior_walk", "_walk", "_base"):
        figure = figure.removesuffix(suffix)
    return figure


def _passes_table(summary: dict) -> list[str]:
    """The ``WITHIN`` comparisons, a table each (none where no arm has its figures)."""
    labels = {"swd": ("SWD", 4), "shapes_named": ("named", 2), "named_as_asked": ("as asked", 2),
              "critic_score": ("critic", 3)}
    rows = []
    for name, pairs, intro, first, difference in WITHIN:
        arms = {a: t for a, t in summary["arms"].items() if f"swd_{name}" in t}
        if not arms:
            continue
        head = " | ".join(f"{labels[_root(f)][0]} {first} | {labels[_root(f)][0]} {difference}" for f, _ in pairs)
        rows += ["", f"{intro}; the difference paired seed by seed, with its 95% interval:", "",
                 f"| arm | {head} |", "|---|" + "---|---|" * len(pairs)]
        for arm, t in arms.items():
            cells = []
            for figure, against in pairs:
                digits = labels[_root(figure)][1]
                entry = t.get(f"{_root(figure)}_{name}")
                ci = f" ({entry['ci95'][0]:+.{digits}f} to {entry['ci95'][1]:+.{digits}f})" \
                    if entry and entry.get("ci95") and not math.isnan(entry["ci95"][0]) else ""
                cells += [_pm(t.get(against), digits), _pm(entry, digits) + ci]
            rows.append(f"| {arm} | " + " | ".join(cells) + " |")
    return rows


def summarise(study, *, commit: str | None = None) -> dict:
    """Write a study's ``results.json``, ``results.md``, ``swd.png`` and ``samples.png``;
    return the JSON. ``commit``: the kit's commit that trained the runs (default: the
    current one)."""
    from .plots import plot_study_samples, plot_study_swd

    runs = study.results()
    add_equal_time(runs)
    arms = list(study.arms)
    baseline = study.baseline
    summary = {"settings": {**study.settings, "arms": {a: study.arms[a].overrides for a in arms},
                            "seeds": study.seeds},
               "command": study.command(), "commit": commit or _commit(), "version": __version__,
               "baseline": baseline, "samples_seed": _grid_seed(study),
               "devices": sorted({f"{r['device']} {r['precision']}" for r in runs}),
               "arms": {arm: {"question": study.arms[arm].question, **arm_table(runs, arm, baseline)}
                        for arm in arms},
               "runs": runs}
    with atomic_write(study.out / "results.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    with atomic_write(study.out / "results.md") as tmp:
        tmp.write_text(markdown_table(summary) + "\n")
    for name, figure in (("swd.png", plot_study_swd(runs, arms)),
                         ("samples.png", plot_study_samples(study.out, arms, summary["samples_seed"]))):
        with atomic_write(study.out / name) as tmp:
            figure.savefig(tmp, format="png", dpi=80)
    return summary


def _grid_seed(study) -> int:
    """The first seed whose every arm has its samples here (restored runs have none)."""
    return next((seed for seed in study.seeds if all(
        (study.folder(arm, seed) / "samples.png").exists() for arm in study.arms)), study.seeds[0])


def machine(device: torch.device) -> str:
    """The accelerator's name, or the processor's, for the record."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    """The git commit the kit runs from (``+`` when it has uncommitted changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+" if dirty else "")) or None
