"""The screen of quality levers behind the cpu preset (README, Training).

Each arm is the cpu preset of commit cca49e6 (vae_weight 5, calibrated likelihood,
G_ema 0.95, n_critic 2, no critic on reconstructions) with a few fields changed,
trained for 1,200 steps with seeds 0, 1, 2 by ``vidgen-experiment``'s runner. It was
run in two batches on an NVIDIA H200 (bf16 autocast, 11-12 runs at a time, each batch
stopped at its time limit, so a few runs of the first are missing):

    python docs/results/screen_cpu/screen.py OUT 1200 12 first
    python docs/results/screen_cpu/screen.py OUT 1200 11 second

``OLD`` holds what today's preset changed since (``adversarial_recon`` on, learning
rate 2e-3, gp_weight 5), so the arms start where they started then.
"""
import os
import sys
from pathlib import Path

from vidgen_nb import experiments as ex

DEEP = ("decoder.up.*", "decoder.out.*")
OLD = {"adversarial_recon": False, "lr": 5e-4, "gp_weight": 10.0,  # the preset then
       "sample_every": 400, "checkpoint_every": 400}
BATCHES = {
    "first": {
        "base": {},
        "vw1": {"vae_weight": 1.0},
        "vw02": {"vae_weight": 0.2},
        "vw005": {"vae_weight": 0.05},
        "z16": {"latent_dim": 16},
        "z16_vw1": {"latent_dim": 16, "vae_weight": 1.0},
        "vw1_nc1": {"vae_weight": 1.0, "n_critic": 1},
        "vw1_advrec": {"vae_weight": 1.0, "adversarial_recon": True},
        "advrec": {"adversarial_recon": True},
        "sig01_vw1": {"recon_sigma": 0.1, "vae_weight": 1.0},
        "vw1_nopred": {"vae_weight": 1.0, "use_predictor": False},
        "vw1_chdeep": {"vae_weight": 1.0, "delta_param": "channel", "delta_targets": DEEP},
    },
    "second": {
        "advrec": {"adversarial_recon": True},
        "advrec_z16": {"adversarial_recon": True, "latent_dim": 16},
        "advrec_z32": {"adversarial_recon": True, "latent_dim": 32},
        "advrec_vw20": {"adversarial_recon": True, "vae_weight": 20.0},
        "advrec_rtgF": {"adversarial_recon": True, "recon_through_generator": False},
        "advrec_nopred": {"adversarial_recon": True, "use_predictor": False},
        "advrec_chdeep": {"adversarial_recon": True, "delta_param": "channel", "delta_targets": DEEP},
    },
}

if __name__ == "__main__":
    out, steps, jobs, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    for name, changes in BATCHES[batch].items():
        ex.ARMS[name] = ex.Arm(name, {**OLD, **changes})
    study = ex.Study(out, preset="cpu", arms=list(BATCHES[batch]), seeds=(0, 1, 2), steps=steps,
                     swd_every=400)
    study.run(jobs=jobs, device=os.environ.get("DEVICE", "cuda"))
