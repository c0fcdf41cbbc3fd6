"""The second screen of quality levers (README, Training): learning rate, critic, data.

Each run is the cpu preset of commit bdbd2a5 (lr 5e-4, gp_weight 10, the critic also
judging reconstructions) with a few fields changed, trained for 1,000 steps (make
train's length) by ``experiments.run_arm``, SWD every 200 steps. It was run in three
batches of 14-16 runs at a time, one process each, on an NVIDIA H200 (bf16 autocast):

    python docs/results/screen_lr/screen.py OUT first
    python docs/results/screen_lr/screen.py OUT second
    python docs/results/screen_lr/screen.py OUT third

``data4k`` arms train on the built-in generator's 1,000 images per class instead of
100 (the first 100 of each class are the usual set). One run of ``base`` (seed 2)
trained 3,000 steps to see where the preset levels off. Pass ``DEV=cpu`` to run on
the CPU instead (slowly: one run at a time there).
"""
import multiprocessing as mp
import os
import sys
from concurrent import futures
from pathlib import Path

W = (64, 128, 256)  # wider encoder and decoder
ARMS = {
    "base": {}, "avg": {"critic_pool": "avg"}, "data4k": {}, "gp1": {"gp_weight": 1.0},
    "lr1e3": {"lr": 1e-3}, "w64": {"widths": W}, "b099": {"betas": (0.0, 0.99)},
    "b64": {"batch_size": 64}, "avg_data4k": {"critic_pool": "avg"},
    "avg_gp1": {"critic_pool": "avg", "gp_weight": 1.0}, "nc3": {"n_critic": 3},
    "ema99": {"ema_decay": 0.99}, "lr2e3": {"lr": 2e-3}, "lr1e3_w64": {"lr": 1e-3, "widths": W},
    "lr1e3_b64": {"lr": 1e-3, "batch_size": 64}, "cw64": {"critic_widths": W},
    "lr1e3_cw64": {"lr": 1e-3, "critic_widths": W}, "gp30": {"gp_weight": 30.0},
    "gp5": {"gp_weight": 5.0}, "lr1e3_z16": {"lr": 1e-3, "latent_dim": 16},
    "lr1e3_beta05": {"lr": 1e-3, "beta": 0.5}, "lr1e3_nopred": {"lr": 1e-3, "use_predictor": False},
    "lr2e3_w64": {"lr": 2e-3, "widths": W}, "lr2e3_gp5": {"lr": 2e-3, "gp_weight": 5.0},
    "lr2e3_z16": {"lr": 2e-3, "latent_dim": 16},
    "lr1e3_w64_gp5": {"lr": 1e-3, "widths": W, "gp_weight": 5.0},
}
# The preset of bdbd2a5, against which the arms changed one or two fields.
BEFORE = {"lr": 5e-4, "gp_weight": 10.0}
BATCHES = {
    "first": [("base", 0), ("base", 1), ("avg", 0), ("avg", 1), ("data4k", 0), ("data4k", 1),
              ("gp1", 0), ("lr1e3", 0), ("w64", 0), ("b099", 0), ("b64", 0), ("avg_data4k", 0),
              ("avg_gp1", 0), ("nc3", 0), ("ema99", 0), ("base", 2)],
    "second": [("lr1e3", 1), ("lr1e3", 2), ("lr2e3", 0), ("w64", 1), ("lr1e3_w64", 0),
               ("lr1e3_w64", 1), ("b64", 1), ("lr1e3_b64", 0), ("cw64", 0), ("lr1e3_cw64", 0),
               ("gp30", 0), ("gp5", 0), ("lr1e3_z16", 0), ("lr1e3_beta05", 0),
               ("lr1e3_nopred", 0), ("lr2e3", 1)],
    "third": [("lr2e3", 2), ("lr1e3_w64", 2), ("lr2e3_w64", 0), ("lr2e3_w64", 1), ("lr2e3_w64", 2),
              ("gp5", 1), ("lr2e3_gp5", 0), ("lr2e3_gp5", 1), ("lr2e3_z16", 0), ("lr1e3_b64", 1),
              ("lr1e3_w64_gp5", 0), ("lr1e3_w64_gp5", 1), ("gp5", 2), ("lr2e3_z16", 1)],
}


def work(arm: str, seed: int, out: str, big: str) -> tuple:
    import torch

    torch.set_num_threads(1)
    from vidgen_nb.config import Config
    from vidgen_nb.experiments import run_arm

    steps = 3000 if (arm, seed) == ("base", 2) else 1000
    cfg = Config.preset("cpu", **{**BEFORE, **ARMS[arm]}, seed=seed, steps=steps,
                        sample_every=1000, checkpoint_every=200)
    folder = Path(out) / arm / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    result = run_arm(folder, cfg, swd_every=200, data=big if "data4k" in arm else None,
                     device=os.environ.get("DEV", "cuda"))
    return arm, seed, result["swd"]


if __name__ == "__main__":
    out, batch = sys.argv[1], sys.argv[2]
    from vidgen_nb.data import builtin_dataset

    builtin_dataset()
    big = str(builtin_dataset(per_class=1000))
    todo = BATCHES[batch]
    jobs = 1 if os.environ.get("DEV") == "cpu" else len(todo)
    with futures.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        for done in futures.as_completed([pool.submit(work, a, s, out, big) for a, s in todo]):
            print(*done.result(), flush=True)
