"""Is the judge stricter with some classes than others? Fresh shapes, blurred.

    python docs/results/shapes_lost/judge_classes.py

200 fresh images of each class (drawn by the built-in ``render_shape``, seed 12345, on
its own backgrounds, no added noise), Gaussian-blurred by 0, 0.5, 1 and 1.5 pixels of
the 32 px image, judged by the shipped 32 px judge: the share it names (probability
>= 0.9) and, in brackets, the share it names as the right class.
"""
import random

import torch
from PIL import ImageFilter

from vidgen_nb.data.loading import image_transform
from vidgen_nb.data.shapes import render_shape
from vidgen_nb.judge import CLASSES, CONFIDENT, DRAW_SIZE, load_judge

judge, transform, rng = load_judge(32).eval(), image_transform(32), random.Random(12345)
print("blur (px at 32) | " + " | ".join(CLASSES))
for px in (0, 0.5, 1.0, 1.5):
    row = []
    for k, kind in enumerate(CLASSES):
        images = []
        for _ in range(200):
            img = render_shape(kind, rng, DRAW_SIZE)
            if px:
                img = img.filter(ImageFilter.GaussianBlur(px * DRAW_SIZE / 32))
            images.append(transform(img))
        with torch.no_grad():
            best, label = judge(torch.stack(images)).softmax(1).max(1)
        named = (best >= CONFIDENT) & (label < len(CLASSES))
        row.append(f"{named.float().mean():.2f} ({(named & (label == k)).float().mean():.2f})")
    print(f"{px} | " + " | ".join(row), flush=True)
