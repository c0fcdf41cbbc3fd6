"""Long runs: do shapes come with more steps? (README, Training)

Four runs of the cpu preset (two seeds; wider layers; 1,000 images per class) trained
for as long as the time allows, one process each, on an NVIDIA H200 (bf16 autocast);
every 1,000 steps ``Trainer.evaluate`` (SWD, the shape judge, the VAE's and the deltas'
figures) is appended to OUT/<arm>_<seed>.json and the sample grid rewritten:

    RUNS_DIR=/tmp/long_runs timeout 330 python docs/results/screen_shapes/long.py OUT
"""
import json
import multiprocessing as mp
import sys
from concurrent import futures
from pathlib import Path

from screen import ARMS, judged_points, trainer_for

RUNS = [("base", 0), ("base", 1), ("w64", 0), ("data4k", 0)]
STEPS, EVERY = 10_000, 1000


def work(arm: str, seed: int, out: str, big: str, arms: dict = ARMS) -> None:
    trainer = trainer_for(arm, seed, out, big, arms, STEPS, f"{arm}_{seed}")
    points = []
    for point in judged_points(trainer, STEPS, EVERY):
        points.append(point)
        trainer.save_samples(Path(out) / f"{arm}_{seed}.png")
        (Path(out) / f"{arm}_{seed}.json").write_text(json.dumps(points, indent=1))
        print(arm, seed, trainer.step, round(point["swd"], 4), round(point["shapes_named"], 3), flush=True)


def main(out: str, arms: dict = ARMS, runs: list = RUNS) -> None:
    from vidgen_nb.data import builtin_dataset

    builtin_dataset()
    big = str(builtin_dataset(per_class=1000)) if "data4k" in arms else ""
    with futures.ProcessPoolExecutor(len(runs), mp_context=mp.get_context("spawn")) as pool:
        for done in futures.as_completed([pool.submit(work, a, s, out, big, arms) for a, s in runs]):
            done.result()


if __name__ == "__main__":
    main(sys.argv[1])
