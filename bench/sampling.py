"""Sampling time of 16 images, naive (one full forward per pixel) vs cached (pixel_cnn_pp/model/sampling.py).

    python bench/sampling.py --naive_pixels=4                 # PixelCNN++ paper configuration
    python bench/sampling.py --preset=snail_cifar10 --naive_pixels=2    # PixelSNAIL, published
    python bench/sampling.py --nr_resnet=1 --nr_filters=32 --naive_pixels=0   # both in full

Naive: the graph sampler the exports use (tf.while_loop of full forwards). With
--naive_pixels=N > 0 only N pixels are generated and the time is scaled to H*W pixels: every
naive step is the same full forward, so its cost per pixel is constant. --naive_pixels=0 runs
it to the end and also counts the sub-pixels where the images of the two samplers differ
(the Python naive sampler, same seed: float rounding only). Prints one table row and appends
it to bench/RESULTS.md.
"""
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.harness import record  # noqa: E402

from pixel_cnn_pp.model.registry import build_model  # noqa: E402
from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset  # noqa: E402

flags.DEFINE_string("preset", "cifar10",
                    "Preset whose model is timed: cifar10 (PixelCNN++ paper configuration), "
                    "snail_cifar10 (PixelSNAIL h12_noup_smallkey), ...")
flags.DEFINE_integer("nr_resnet", 0, "Override nr_resnet (0: the paper's).")
flags.DEFINE_integer("nr_filters", 0, "Override nr_filters (0: the paper's).")
flags.DEFINE_integer("attn_rep", 0, "PixelSNAIL: override attn_rep (0: the paper's 12).")
flags.DEFINE_integer("image_size", 0, "Height and width (0: the preset dataset's).")
flags.DEFINE_integer("num_samples", 16, "Images per run.")
flags.DEFINE_integer("naive_pixels", 4, "Naive pixels to time and scale (0: all, and compare).")
F = flags.FLAGS


def naive_graph_time(model, pixels):
    """Seconds of the naive graph sampler for `pixels` pixels (after one traced warm-up)."""
    h, w, c = model.image_shape
    forward = tf.function(lambda x: model(x)[:, 0, 0])
    x = tf.zeros((F.num_samples, h, w, c))
    forward(x)  # trace
    start = time.time()
    for _ in range(pixels):
        forward(x).numpy()
    return time.time() - start


def build():
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters", "attn_rep")
                 if getattr(F, k)}
    config, dataset, _ = from_preset(F.preset, dropout_p=0.0, **overrides)
    shape = DATASET_SHAPES[dataset]
    if F.image_size:
        shape = (F.image_size, F.image_size, shape[-1])
    model = build_model(config.model, shape, **config.model_options)
    model.build_all()
    model.initialize(np.random.RandomState(0).randint(0, 256, (16, *shape), np.uint8))
    return model


def main(argv):
    del argv
    model = build()
    size = model.image_shape[0]
    pixels = size * model.image_shape[1]
    start = time.time()
    fast = model.sample(F.num_samples, seed=1, method="fast")
    fast_s = time.time() - start
    if F.naive_pixels:
        naive_s = naive_graph_time(model, F.naive_pixels) * pixels / F.naive_pixels
        how, same = f"{F.naive_pixels} of {pixels} pixels timed, scaled", "not run"
    else:
        from pixel_cnn_pp.runtime.graph_sampler import sample_images
        graph = tf.function(lambda: sample_images(model, F.num_samples, 1))
        start = time.time()
        graph()
        naive_s = time.time() - start
        how = "all pixels"
        naive = model.sample(F.num_samples, seed=1, method="naive")
        same = f"{int((naive != fast).sum())} of {fast.size} sub-pixels differ"
    flags_text = " ".join(f"--{k}={getattr(F, k)}" for k in
                          ("preset", "nr_resnet", "nr_filters", "attn_rep", "image_size",
                           "naive_pixels") if getattr(F, k) or k == "naive_pixels")
    line = (f"| {model.name} {model.nr_resnet}/{model.nr_filters}, "
            f"{'x'.join(map(str, model.image_shape))} | "
            f"{model.count_params():,} | {F.num_samples} | {naive_s:.1f} s ({how}) | "
            f"{fast_s:.1f} s | {naive_s / fast_s:.1f}x | {same} | "
            f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}, "
            f"Keras {keras.__version__} | `python bench/sampling.py {flags_text}` |")
    text = ("\n| model nr_resnet/filters, image | params | images | naive | cached | speed-up "
            "| same images as naive | machine | command |\n|---|---|---|---|---|---|---|---|---|\n"
            + line + "\n")
    record(text)


if __name__ == "__main__":
    app.run(main)
