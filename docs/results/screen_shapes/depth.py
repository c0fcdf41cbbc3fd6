"""The fourth screen (README, Training): does depth bring shapes?

The third screen (``screen.py``) changed widths, data, latent size and the loss balance,
and no arm made shapes the judge names. This one changes the networks' depth within the
seed's layer kinds: ``decoder_convs`` (more ConvTranspose2d/ReLU layers per resolution),
``critic_convs`` (more Conv2d per critic block) and ``critic_mbstd`` (the minibatch
standard deviation as a critic feature, ProGAN's remedy for samples that look alike).
Everything else as ``screen.py`` (2,000 steps, figures at 1,000, 1,500 and 2,000):

    RUNS_DIR=/tmp/depth_runs python docs/results/screen_shapes/depth.py OUT

then ``python docs/results/screen_shapes/depth.py OUT --collect`` writes OUT/results.json.
With ``--long``, the runs of LONG go on as ``long.py``'s do, to as many steps as the time
allows (stop them with ``timeout``).
"""
import sys

from screen import main

D2, C2, MB = {"decoder_convs": 2}, {"critic_convs": 2}, {"critic_mbstd": True}
ARMS = {
    "base": {}, "dec2": D2, "crit2": C2, "mbstd": MB, "dec2_crit2": {**D2, **C2},
    "deep": {**D2, **C2, **MB}, "deep_dec3": {**D2, **C2, **MB, "decoder_convs": 3},
    "deep_z16": {**D2, **C2, **MB, "latent_dim": 16}, "dec3": {"decoder_convs": 3},
}
RUNS = [("base", 0), ("base", 1), ("dec2", 0), ("dec2", 1), ("crit2", 0), ("crit2", 1),
        ("mbstd", 0), ("mbstd", 1), ("dec2_crit2", 0), ("dec2_crit2", 1), ("deep", 0),
        ("deep", 1), ("deep", 2), ("deep_dec3", 0), ("deep_z16", 0), ("deep_z16", 1)]
LONG = [("deep_dec3", 0), ("deep_dec3", 1), ("deep_dec3", 2), ("dec3", 0)]

if __name__ == "__main__":
    if "--long" in sys.argv:
        import long

        long.main(sys.argv[1], ARMS, LONG)
    else:
        main(sys.argv, ARMS, RUNS)
