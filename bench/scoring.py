"""Scoring and completion time, each measured against its reference in one run: the per-pixel
and per-sub-pixel log-likelihood maps against the image score (`bits_per_dim`), and completing
the bottom half of images (`model.complete`) against drawing whole images (`model.sample`).

    python bench/scoring.py                                    # PixelCNN++ paper configuration
    python bench/scoring.py --nr_resnet=1 --nr_filters=32 --image_size=8 --rounds=3   # quick

Scoring: `model.log_prob(x, reduce=...)` for reduce = image, pixel, subpixel, each in its own
tf.function (compiled alike, so only the reduction differs), on --batch random images. The
maps run the same network as the score; only the last reduction differs, so a map should
cost under 1.05x the score. Completion: the top half of the rows known, the bottom half drawn
by the cached sampler, against --num_samples whole images. The completion runs the cached
network at every pixel, the known ones too (their outputs fill the caches the drawn pixels
read), and keeps the known pixels instead of their draws, so it should cost about 1.0x. Each
variant's first call (trace/compile included) is reported apart; then --rounds
rounds time every variant once, in turn, the order reversed every other round (the variant
run first can look faster), and a ratio is the median over rounds of the per-round ratios,
with its range. Prints the tables (bench/harness.py).
"""
import time

import harness

harness.setup(onednn=True)  # as train.py and export.py run, before TensorFlow starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.model.levels import images_to_float  # noqa: E402
from pixel_cnn_pp.runtime import hardware  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is timed (cifar10: PixelCNN++ "
                    "paper configuration, 32x32x3, nr_resnet 5, nr_filters 160, 10 logistics).")
flags.DEFINE_integer("nr_resnet", 0, "Override nr_resnet (0: the preset's).")
flags.DEFINE_integer("nr_filters", 0, "Override nr_filters (0: the preset's).")
flags.DEFINE_integer("image_size", 0, "Height and width (0: the preset dataset's).")
flags.DEFINE_integer("batch", 16, "Images scored per call.")
flags.DEFINE_integer("num_samples", 16, "Images completed and sampled per call.")
flags.DEFINE_integer("rounds", 10, "Timed rounds of the scoring variants.")
flags.DEFINE_integer("sample_rounds", 3, "Timed rounds of completion and sampling.")
flags.DEFINE_bool("completion", True, "Also time completion against sampling.")
F = flags.FLAGS

REDUCTIONS = ("image", "pixel", "subpixel")


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build():
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters")}
    return harness.preset_model(F.preset, F.image_size, **overrides)


def rounds(calls, n):
    """{name: first call's seconds}, {name: [seconds per round]}: calls timed in turn, the
    order reversed every other round."""
    first = {name: timed(call) for name, call in calls.items()}
    times = {name: [] for name in calls}
    for r in range(n):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            times[name].append(timed(calls[name]))
    return first, times


def ratio(times, name, reference):
    """'median (min to max)' of the per-round ratios name / reference."""
    r = np.array(times[name]) / np.array(times[reference])
    return f"{np.median(r):.3f}x ({r.min():.3f} to {r.max():.3f})"


def scoring(model):
    images = np.random.RandomState(1).randint(0, 256, (F.batch, *model.image_shape), np.uint8)
    x = images_to_float(images)
    # One tf.function per reduction, built the same way: the comparison is of compiled programs.
    calls = {}
    for reduce in REDUCTIONS:
        fn = tf.function(lambda x, reduce=reduce: model.log_prob(x, reduce=reduce))
        calls[reduce] = lambda fn=fn: fn(x).numpy()  # .numpy(): the result is there when timed
    first, times = rounds(calls, F.rounds)
    lines = ["| reduce | first call (trace included) | median | images/s | time / image "
             "score's, per round: median (range) |", "|---|---|---|---|---|"]
    for reduce in REDUCTIONS:
        median = float(np.median(times[reduce]))
        lines.append(f"| {reduce} | {first[reduce]:.2f} s | {median * 1000:.1f} ms | "
                     f"{F.batch / median:.1f} | {ratio(times, reduce, 'image')} |")
    lines.append(f"\nTarget: the per-pixel map under 1.05x the image score's time "
                 f"({F.rounds} rounds, batch {F.batch}).")
    return lines


def completion(model):
    n, (height, width, _) = F.num_samples, model.image_shape
    images = np.random.RandomState(2).randint(0, 256, (n, *model.image_shape), np.uint8)
    known = np.zeros((height, width), bool)
    known[:height // 2] = True  # top half of the rows given, the bottom half drawn
    calls = {"complete": lambda: model.complete(images, known, seed=1),
             "sample": lambda: model.sample(n, seed=1)}
    first, times = rounds(calls, F.sample_rounds)
    lines = ["| call | first call (trace included) | median | images/s | time / sample's, per "
             "round: median (range) |", "|---|---|---|---|---|"]
    for name in calls:
        median = float(np.median(times[name]))
        lines.append(f"| {name} | {first[name]:.2f} s | {median:.3f} s | {n / median:.1f} | "
                     f"{ratio(times, name, 'sample')} |")
    lines.append(f"\nExpected: completing the bottom half about 1.0x sampling's time "
                 f"({F.sample_rounds} rounds, {n} images).")
    return lines


def main(argv):
    del argv
    hardware.choose_filter_gradient()
    model = build()
    what = (f"preset {F.preset}, {model.name} {model.nr_resnet}/{model.nr_filters}, "
            f"{'x'.join(map(str, model.image_shape))}, {model.count_params():,} parameters")
    harness.report(f"{what}: log_prob by reduction, batch {F.batch}", scoring(model))
    if F.completion:
        harness.report(f"{what}: complete (bottom half) against sample, {F.num_samples} "
                       f"images", completion(model))


if __name__ == "__main__":
    app.run(main)
