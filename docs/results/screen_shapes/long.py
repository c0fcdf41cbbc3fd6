"""Long runs: do shapes come with more steps? (README, Training)

Four runs of the cpu preset (two seeds; wider layers; 1,000 images per class) trained
for as long as the time allows, one process each, on an NVIDIA H200 (bf16 autocast);
every 1,000 steps ``Trainer.evaluate`` (SWD, the shape judge, the VAE's and the deltas'
figures) is appended to OUT/<arm>_<seed>.json and the sample grid rewritten:

    RUNS_DIR=/tmp/long_runs timeout 330 python docs/results/screen_shapes/long.py OUT
"""
import json
import multiprocessing as mp
import os
import sys
import time
from concurrent import futures
from pathlib import Path

from screen import ARMS, judged_point

RUNS = [("base", 0), ("base", 1), ("w64", 0), ("data4k", 0)]
STEPS, EVERY = 10_000, 1000


def work(arm: str, seed: int, out: str, big: str, arms: dict = ARMS) -> None:
    import torch

    torch.set_num_threads(1)
    from vidgen_nb.config import Config
    from vidgen_nb.training import Trainer

    cfg = Config.preset("cpu", **arms[arm], seed=seed, steps=STEPS, sample_every=STEPS,
                        checkpoint_every=STEPS)
    trainer = Trainer(cfg, data=big if arm == "data4k" else None, overwrite=True,
                      out=Path(os.environ.get("RUNS_DIR", out)) / f"{arm}_{seed}",
                      device=os.environ.get("DEV", "cuda"), progress=False)
    points, seconds = [], 0.0
    while trainer.step < STEPS:
        tick = time.perf_counter()
        trainer.train(EVERY)
        seconds += time.perf_counter() - tick
        points.append(judged_point(trainer, seconds))
        trainer.save_samples(Path(out) / f"{arm}_{seed}.png")
        (Path(out) / f"{arm}_{seed}.json").write_text(json.dumps(points, indent=1))
        print(arm, seed, trainer.step, round(points[-1]["swd"], 4), round(points[-1]["shapes_named"], 3),
              flush=True)


def main(out: str, arms: dict = ARMS, runs: list = RUNS) -> None:
    from vidgen_nb.data import builtin_dataset

    builtin_dataset()
    big = str(builtin_dataset(per_class=1000)) if "data4k" in arms else ""
    with futures.ProcessPoolExecutor(len(runs), mp_context=mp.get_context("spawn")) as pool:
        for done in futures.as_completed([pool.submit(work, a, s, out, big, arms) for a, s in runs]):
            done.result()


if __name__ == "__main__":
    main(sys.argv[1])
