"""Sampling time, all measured in one run: naive (one full forward per pixel), the cached sampler
of the API (`model.sample`) and the SavedModel's `sample` signature (what TF Serving runs).

    python bench/sampling.py                                   # PixelCNN++ paper configuration
    python bench/sampling.py --preset=snail_cifar10 --naive_pixels=2   # PixelSNAIL, published
    python bench/sampling.py --batches=1,16,64                 # + time per image by batch size
    python bench/sampling.py --nr_resnet=1 --nr_filters=32 --image_size=8 --naive_pixels=0

Naive: every step is the same full forward pass, so --naive_pixels=N > 0 times N jitted
forwards and scales to H*W pixels; --naive_pixels=0 runs the naive sampler to the end and
counts the sub-pixels where its images differ from the cached ones (float rounding only).
Cached and SavedModel: the first call (trace/compile included) and a second call (warm) are
reported apart; the SavedModel is loaded back with tf.saved_model.load and its images are
compared with model.sample's for the same seed. Prints the tables (bench/harness.py).
"""
import tempfile
import time

import harness

harness.setup(onednn=True)  # as train.py and export.py run, before TensorFlow starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.runtime import hardware  # noqa: E402

flags.DEFINE_string("preset", "cifar10",
                    "Preset whose model is timed: cifar10 (PixelCNN++ paper configuration), "
                    "snail_cifar10 (PixelSNAIL h12_noup_smallkey), ...")
flags.DEFINE_integer("nr_resnet", 0, "Override nr_resnet (0: the paper's).")
flags.DEFINE_integer("nr_filters", 0, "Override nr_filters (0: the paper's).")
flags.DEFINE_integer("attn_rep", 0, "PixelSNAIL: override attn_rep (0: the paper's 12).")
flags.DEFINE_integer("image_size", 0, "Height and width (0: the preset dataset's).")
flags.DEFINE_integer("num_samples", 16, "Images per run.")
flags.DEFINE_integer("naive_pixels", 4, "Naive pixels to time and scale (0: all, and compare).")
flags.DEFINE_bool("savedmodel", True, "Also export and time the SavedModel's sample signature.")
flags.DEFINE_list("batches", [], "Batch sizes for time per image of the cached sampler.")
F = flags.FLAGS


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def build():
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters", "attn_rep")}
    return harness.preset_model(F.preset, F.image_size, **overrides)


def naive_seconds(model, n):
    """(seconds for all pixels, how, the naive images or None), from N jitted forwards or the
    whole naive sampler."""
    pixels = model.image_shape[0] * model.image_shape[1]
    if F.naive_pixels:
        forward = tf.function(lambda x: model(x)[:, 0, 0])
        x = tf.zeros((n, *model.image_shape))
        forward(x)  # trace
        seconds, _ = timed(lambda: [forward(x).numpy() for _ in range(F.naive_pixels)])
        how = f"{F.naive_pixels} of {pixels} pixels, scaled"
        return seconds * pixels / F.naive_pixels, how, None
    seconds, images = timed(lambda: model.sample(n, seed=1, method="naive"))
    return seconds, "all pixels", images


def savedmodel_seconds(model, n, reference):
    """(first call, second call, how many images equal model.sample's) of the export."""
    from pixel_cnn_pp.runtime.export import export_model
    with tempfile.TemporaryDirectory() as folder:
        path = export_model(model, folder, max_samples=max(n, 1))
        loaded = tf.saved_model.load(path)
        sample = loaded.signatures["sample"]

        def call(seed):
            return sample(num_samples=tf.constant(n), seed=tf.constant(seed, tf.int64))["images"]

        first, images = timed(lambda: call(1).numpy())
        second, _ = timed(lambda: call(2).numpy())
    equal = int(np.sum(np.all(images == reference, axis=(1, 2, 3))))
    return first, second, equal


def main(argv):
    del argv
    hardware.choose_filter_gradient()
    model = build()
    n = F.num_samples
    first, _ = timed(lambda: model.sample(n, seed=3))
    cached, images = timed(lambda: model.sample(n, seed=1))
    naive, how, naive_images = naive_seconds(model, n)
    same = ("not run" if naive_images is None else
            f"{int((naive_images != images).sum())} of {images.size} sub-pixels differ")
    if F.savedmodel:
        sm_first, sm, equal = savedmodel_seconds(model, n, images)
        saved = f"{sm:.1f} s (first call {sm_first:.1f} s); {equal} of {n} images = model.sample's"
    else:
        saved = "not run"
    lines = ["| naive | cached (warm) | cached first call (trace included) | speed-up | "
             "SavedModel `sample` (warm) | same images as naive |", "|---|---|---|---|---|---|",
             f"| {naive:.1f} s ({how}) | {cached:.1f} s | {first:.1f} s | {naive / cached:.0f}x "
             f"| {saved} | {same} |"]
    if F.batches:
        lines += ["", "| batch | cached, warm | per image |", "|---|---|---|"]
        for batch in (int(b) for b in F.batches):
            model.sample(batch, seed=3)  # trace for this batch size
            seconds, _ = timed(lambda: model.sample(batch, seed=1))
            lines.append(f"| {batch} | {seconds:.1f} s | {seconds / batch:.2f} s |")
    from pixel_cnn_pp.model.sampling import state_bytes
    lines += ["", f"Cached sampler state (caches and held outputs) at {n} images: "
              f"{state_bytes(model, n) / 2 ** 20:.0f} MiB."]
    harness.report(f"preset {F.preset}, {model.name} {model.nr_resnet}/{model.nr_filters}, "
                   f"{'x'.join(map(str, model.image_shape))}, {model.count_params():,} "
                   f"parameters, {n} images", lines)


if __name__ == "__main__":
    app.run(main)
