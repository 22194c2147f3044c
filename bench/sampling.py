"""Sampling time, all measured in one run: naive (one full forward per pixel), the cached sampler
of the API (`model.sample`) and the SavedModel's `sample` signature (what TF Serving runs).

    python bench/sampling.py                                   # PixelCNN++ paper configuration
    python bench/sampling.py --preset=snail_cifar10 --naive_pixels=2   # PixelSNAIL, published
    python bench/sampling.py --batches=1,16,64                 # + time per image by batch size
    python bench/sampling.py --nr_resnet=1 --nr_filters=32 --image_size=8 --naive_pixels=0
    python bench/sampling.py --baseline=HEAD~1 --rounds=2      # the cached sampler, before/after

Naive: every step is the same full forward pass, so --naive_pixels=N > 0 times N jitted
forwards and scales to H*W pixels; --naive_pixels=0 runs the naive sampler to the end and
counts the sub-pixels where its images differ from the cached ones (float rounding only).
Cached and SavedModel: the first call (trace/compile included) and a second call (warm) are
reported apart; the SavedModel is loaded back with tf.saved_model.load and its images are
compared with model.sample's for the same seed. Prints the tables (bench/harness.py).

--baseline=REV: only the cached sampler, of this code and of git revision REV, each call in
its own process on the same weights (seeded init, DDI on the same images), --rounds times in
alternation (REV first); the warm call's time per round, the median of the per-round ratios,
and whether the two codes drew the same images for the seed. --profile=N: where a warm cached
call's time goes, the N op types with the most op time (ops of one type summed; ops run side
by side on the cores, so op time can exceed wall time).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import harness

harness.setup(onednn=True)  # as train.py and export.py run, before TensorFlow starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.model.levels import float_to_images  # noqa: E402
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
flags.DEFINE_string("baseline", None, "Compare the cached sampler with git revision REV's.")
flags.DEFINE_integer("rounds", 2, "With --baseline: calls of each code, in alternation.")
flags.DEFINE_integer("profile", 0, "Only trace one warm cached call and list this many op "
                     "types by total time (tf.profiler).")
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


# One timed cached-sampler call of the code under the working directory (sys.argv[1]: the
# settings); this checkout's harness builds the model, the tree's packages run it.
_CACHED = """
import json, os, sys, time
spec = json.loads(sys.argv[1])
sys.path[:0] = [os.getcwd(), spec["bench"]]
import harness, keras, numpy as np
import pixel_cnn_pp
assert pixel_cnn_pp.__file__.startswith(os.getcwd()), pixel_cnn_pp.__file__
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.runtime import hardware
hardware.choose_filter_gradient()
keras.utils.set_random_seed(0)
model = harness.preset_model(spec["preset"], spec["image_size"], **spec["overrides"])
start = time.perf_counter()
np.asarray(sampling.continuous(model, spec["n"], seed=3))
first = time.perf_counter() - start
start = time.perf_counter()
samples = np.asarray(sampling.continuous(model, spec["n"], seed=1))  # what model.sample rounds
warm = time.perf_counter() - start
np.save(spec["images"], samples)
result = {"first": first, "warm": warm}
if spec["deviation"]:  # the step-by-step network against the full pass, on given images
    x = np.random.default_rng(0).integers(0, 256, (4,) + model.x_shape) / 127.5 - 1
    full = np.asarray(model(x.astype("float32")))
    steps = np.asarray(sampling.teacher_forced(model, x.astype("float32")))
    result["deviation"] = float(np.abs(steps - full).max() / np.abs(full).max())
print("RESULT" + json.dumps(result))
"""


def compare_with(rev):
    """Lines of a table: the cached sampler of this code and of `rev`, alternating calls."""
    trees = [(rev, harness.tree_at(rev)), ("this code", harness.ROOT)]
    folder = tempfile.mkdtemp(prefix="bench_sampling_")
    spec = {"bench": os.path.dirname(os.path.abspath(__file__)), "preset": F.preset,
            "image_size": F.image_size, "n": F.num_samples,
            "overrides": {k: getattr(F, k) for k in ("nr_resnet", "nr_filters", "attn_rep")}}
    runs = {name: [] for name, _ in trees}
    try:
        for round_ in range(F.rounds):
            for name, root in trees:
                images = os.path.join(folder, f"{round_}-{name[:4]}.npy")
                out = subprocess.run([sys.executable, "-c", _CACHED, json.dumps(
                    {**spec, "images": images, "deviation": round_ == 0})],
                                     cwd=root, capture_output=True, text=True)
                if out.returncode or "RESULT" not in out.stdout:
                    sys.exit(f"bench: {name}: failed\n{out.stderr[-2000:]}")
                result = json.loads(out.stdout.split("RESULT", 1)[1])
                runs[name].append({**result, "images": np.load(images)})
                print(f"round {round_ + 1}, {name}: {result['warm']:.2f} s warm "
                      f"({result['first']:.1f} s first call)", flush=True)
    finally:
        shutil.rmtree(trees[0][1], ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    before, after = runs[rev], runs["this code"]
    ratios = [a["warm"] / b["warm"] for a, b in zip(after, before)]
    images = _same_images(after[0]["images"], before[0]["images"])
    lines = ["| code | cached, warm (per round) | first call | this code's time / REV's "
             "(median over rounds) | images against REV's | cached network against the full "
             "pass (largest difference / largest output, 4 given images) |",
             "|---|---|---|---|---|---|"]
    for name, _ in trees:
        warm = ", ".join(f"{r['warm']:.2f}" for r in runs[name])
        ratio = ""
        if name != rev:
            ratio = f"{np.median(ratios):.3f}x ({min(ratios):.3f} to {max(ratios):.3f})"
        lines.append(f"| {name} | {warm} s | {runs[name][0]['first']:.1f} s | {ratio} | "
                     f"{images if name != rev else ''} | {runs[name][0]['deviation']:.1e} |")
    return lines


def _same_images(a, b):
    """How the uint8 images of two codes' continuous samples a, b (N, H, W, C) compare: equal
    images, and whether the sub-pixels that differ lie within float rounding of a level
    boundary (the tests' criterion, `assert_same_images`)."""
    differ = np.asarray(float_to_images(a)) != np.asarray(float_to_images(b))
    equal = int(np.sum(~np.any(differ, axis=(1, 2, 3))))
    position = b * 127.5 + 127.5
    at_boundary = np.abs(position - np.floor(position) - 0.5) < 1e-3
    return (f"{equal} of {len(a)} equal; {int(differ.sum())} of {differ.size} sub-pixels differ"
            f", {int((differ & ~at_boundary).sum())} of them away from a level boundary; "
            f"samples within {np.abs(a - b).max():.1e}")


def profile(model, top):
    """Lines of a table: the op types of one traced warm cached call, most op time first."""
    n = F.num_samples
    model.sample(n, seed=3)  # traces
    logdir = tempfile.mkdtemp(prefix="bench_sampling_profile_")
    tf.profiler.experimental.start(logdir)
    seconds, _ = timed(lambda: model.sample(n, seed=1))
    tf.profiler.experimental.stop()
    totals = harness.op_times(harness.xspace(logdir))
    shutil.rmtree(logdir, ignore_errors=True)
    total, count = sum(t for t, _ in totals.values()), sum(c for _, c in totals.values())
    pixels = model.image_shape[0] * model.image_shape[1]
    lines = [f"Traced call {seconds:.2f} s wall; op time {total:.2f} s in {count:,} ops "
             f"({count / pixels:.0f} a pixel).", "",
             "| op type | op time | share of op time | count | per op |", "|---|---|---|---|---|"]
    for kind, (t, c) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:top]:
        lines.append(f"| {kind} | {t:.2f} s | {100 * t / total:.0f}% | {c:,} | "
                     f"{1e6 * t / c:.0f} us |")
    return lines


def main(argv):
    del argv
    if F.baseline:  # both codes run in processes of their own
        return harness.report(f"preset {F.preset}, {F.num_samples} images, cached sampler "
                              f"against {F.baseline}", compare_with(F.baseline))
    hardware.choose_filter_gradient()
    model = build()
    if F.profile:
        return harness.report(f"preset {F.preset}, {F.num_samples} images, a warm cached call "
                              "profiled", profile(model, F.profile))
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
