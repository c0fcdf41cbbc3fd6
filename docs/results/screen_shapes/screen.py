"""The third screen (README, Training): what brings shapes, measured by the shape judge.

Each run is the cpu preset (lr 2e-3, gp_weight 5) with a few fields changed, trained
to 2,000 steps; at 1,000, 1,500 and 2,000 steps ``Trainer.evaluate`` (SWD, the shape
judge, the VAE's and the deltas' figures) and a sample grid. All runs at once, one
process each, on an NVIDIA H200 (bf16 autocast):

    RUNS_DIR=/tmp/screen_runs python docs/results/screen_shapes/screen.py OUT

(checkpoints in RUNS_DIR, figures and grids in OUT), then ``python docs/results/screen_shapes/screen.py OUT --collect`` writes
OUT/results.json. ``data4k`` arms train on the built-in generator's 1,000 images per
class instead of 100. Pass ``DEV=cpu`` to run on the CPU (one run at a time).
"""
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent import futures
from pathlib import Path

ARMS = {
    "base": {}, "w64": {"widths": (64, 128, 256)}, "z16": {"latent_dim": 16}, "data4k": {},
    "vw1": {"vae_weight": 1.0}, "ema99": {"ema_decay": 0.99}, "b16": {"batch_size": 16},
    "nc1": {"n_critic": 1},
}
RUNS = [("base", 0), ("base", 1), ("base", 2), ("w64", 0), ("w64", 1), ("z16", 0), ("z16", 1),
        ("data4k", 0), ("data4k", 1), ("vw1", 0), ("vw1", 1), ("ema99", 0), ("b16", 0),
        ("b16", 1), ("nc1", 0), ("nc1", 1)]
STEPS, EVERY = 2000, 500
KEEP = ("swd", "shapes_named", "shape_counts", "shapes_named_real", "recon_rms", "kl_per_dim",
        "delta_spread", "delta_min_cos", "swd_mean_delta", "swd_floor")


def judged_point(trainer, seconds: float) -> dict:
    """``Trainer.evaluate``'s figures in KEEP at this step, the shape judge's included."""
    figures = trainer.evaluate()
    return {"step": trainer.step, "train_seconds": seconds, **{k: figures[k] for k in KEEP if k in figures}}


def trainer_for(arm: str, seed: int, out: str, big: str, arms: dict, steps: int, name: str):
    """The run of ``arm`` and ``seed``: the cpu preset with the arm's changes, one CPU
    thread, its checkpoints in $RUNS_DIR/``name`` (default OUT/``name``)."""
    import torch

    torch.set_num_threads(1)
    from vidgen_nb.config import Config
    from vidgen_nb.training import Trainer

    cfg = Config.preset("cpu", **arms[arm], seed=seed, steps=steps, sample_every=steps,
                        checkpoint_every=steps)
    return Trainer(cfg, data=big if arm == "data4k" else None, overwrite=True,
                   out=Path(os.environ.get("RUNS_DIR", out)) / name,
                   device=os.environ.get("DEV", "cuda"), progress=False)


def judged_points(trainer, steps: int, every: int, start: int = 0):
    """Train to ``steps`` in chunks of ``every``; after each chunk from step ``start``
    on, yield ``judged_point`` (with the training seconds so far)."""
    seconds = 0.0
    while trainer.step < steps:
        tick = time.perf_counter()
        trainer.train(every)
        seconds += time.perf_counter() - tick
        if trainer.step >= start:
            yield judged_point(trainer, seconds)


def work(arm: str, seed: int, out: str, big: str, arms: dict = ARMS) -> tuple:
    folder = Path(out) / arm / f"seed{seed}"  # figures and grids; the run itself in $RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    trainer = trainer_for(arm, seed, out, big, arms, STEPS, f"{arm}/seed{seed}")
    points = []
    for point in judged_points(trainer, STEPS, EVERY, start=STEPS // 2):
        points.append(point)
        trainer.save_samples(folder / f"samples_{trainer.step}.png")
        (folder / "points.json").write_text(json.dumps(points, indent=1))
    return arm, seed, [(p["step"], round(p["swd"], 4), round(p["shapes_named"], 3)) for p in points]


def collect(out: str, arms: dict = ARMS, runs: list = RUNS) -> None:
    done = [{"arm": arm, "seed": seed, "points": json.loads((Path(out) / arm / f"seed{seed}" / "points.json")
                                                            .read_text())}
            for arm, seed in runs if (Path(out) / arm / f"seed{seed}" / "points.json").exists()]
    (Path(out) / "results.json").write_text(json.dumps({"arms": arms, "runs": done}, indent=1))


def main(argv: list, arms: dict = ARMS, runs: list = RUNS) -> None:
    """Every run at once (one at a time with DEV=cpu), then OUT/results.json."""
    out = argv[1]
    if "--collect" not in argv:
        from vidgen_nb.data import builtin_dataset

        builtin_dataset()
        big = str(builtin_dataset(per_class=1000)) if "data4k" in arms else ""
        jobs = 1 if os.environ.get("DEV") == "cpu" else len(runs)
        with futures.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            for done in futures.as_completed([pool.submit(work, a, s, out, big, arms) for a, s in runs]):
                print(*done.result(), flush=True)
    collect(out, arms, runs)


if __name__ == "__main__":
    main(sys.argv)
