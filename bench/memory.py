"""Training memory with and without `--remat`, measured: the tensors' peak of a step, its time,
and the largest batch whose step fits in a memory budget, by image size.

    python bench/memory.py                      # PixelCNN++ paper configuration, 32x32 and 64x64
    python bench/memory.py --preset=snail_cifar10 --batch_size=8 --image_sizes=32

Every measurement runs the trainer's step (train.py's: forward, backward, the original Adam,
the Polyak update) in its own process, on random images, after data-dependent init on up to 16
of them. Memory is TensorFlow's own count of its CPU allocator (`tf.config.experimental.
get_memory_info`): "state" is what stays allocated between steps (weights, optimiser
state, Polyak shadows), "step peak" the most allocated at once during --steps steps (after a
warm-up step that traces, reset before them): the tensors a device would have to hold, without
the process's runtime, libraries and allocator slack, which are in the peak resident memory
(RSS) beside it.

The largest batch: a step's peak is affine in the batch (per-image activations on top of the
state and the gradients), so it is measured at the two --fit_batches, extrapolated to the
largest batch under --budget_gib, and that batch is run to check it (one smaller while it does
not fit, at most three), unless the process's resident memory, extrapolated the same way,
would pass 85% of this machine's.
"""
import json
import os
import resource
import subprocess
import sys
import time

import harness

harness.setup(onednn=True)  # as train.py runs, before TensorFlow starts (in the workers)

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is measured.")
flags.DEFINE_integer("batch_size", 16, "Batch of the step rows (the preset's published one).")
flags.DEFINE_list("image_sizes", ["32", "64"], "Square image sizes of the largest-batch rows.")
flags.DEFINE_list("fit_batches", ["2", "8"], "Two batch sizes the largest batch is fitted on.")
flags.DEFINE_float("budget_gib", 16.0, "Memory budget of the largest batch, GiB.")
flags.DEFINE_bool("check", True, "Run the predicted largest batch to check that it fits.")
flags.DEFINE_bool("step_rows", True, "Measure the --batch_size rows (remat off and on).")
flags.DEFINE_list("largest_remat", ["off", "on"], "remat settings of the largest-batch rows.")
flags.DEFINE_integer("steps", 2, "Measured steps after one warm-up step.")
flags.DEFINE_string("_worker", None, "Internal: remat,image_size,batch; prints its JSON.")
F = flags.FLAGS
GIB = 2.0 ** 30


def worker(spec):
    """One process: the trainer at (remat, image size, batch); its memory and step time."""
    import numpy as np
    import tensorflow as tf

    from pixel_cnn_pp.runtime import hardware

    remat, size, batch = spec.split(",")
    hardware.choose_filter_gradient()  # train.py's choice for this machine
    trainer, images = harness.preset_trainer(
        F.preset, int(batch), image_size=int(size), init_batch_size=min(int(batch), 16),
        **({"remat": True} if remat == "on" else {}))
    float(trainer.train_step(images))  # traces
    state = tf.config.experimental.get_memory_info("CPU:0")["current"]
    tf.config.experimental.reset_memory_stats("CPU:0")
    times = []
    for _ in range(F.steps):
        start = time.time()
        float(trainer.train_step(images))
        times.append(time.time() - start)
    print("RESULT" + json.dumps({
        "state": state, "peak": tf.config.experimental.get_memory_info("CPU:0")["peak"],
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0,
        "step": float(np.median(times))}))


def measure(remat, size, batch):
    """The worker's JSON for (remat "on"/"off", image size, batch), run in its own process."""
    argv = [sys.executable, os.path.abspath(__file__), f"--_worker={remat},{size},{batch}",
            f"--preset={F.preset}", f"--steps={F.steps}"]
    print(f"remat {remat}, {size}x{size}, batch {batch} ...", flush=True)
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode or "RESULT" not in result.stdout:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  failed (exit {result.returncode}): {tail}", flush=True)
        return None  # killed for memory, or an error: it did not fit
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    print(f"  step peak {out['peak'] / GIB:.2f} GiB, state {out['state'] / GIB:.2f} GiB, "
          f"RSS {out['rss'] / GIB:.2f} GiB, step {out['step']:.1f} s", flush=True)
    return out


def required(remat, size, batch):
    """`measure`, where a failure ends the benchmark."""
    result = measure(remat, size, batch)
    if result is None:
        raise SystemExit(f"bench/memory.py: remat {remat}, {size}x{size}, batch {batch} failed")
    return result


def _affine(runs, key, batch):
    """`key` of the runs (two batch sizes) extrapolated to `batch`, and its slope per image."""
    (b0, r0), (b1, r1) = sorted(runs.items())
    slope = (r1[key] - r0[key]) / (b1 - b0)
    return r0[key] + (batch - b0) * slope, slope


def largest(remat, size):
    """(predicted largest batch, per-image GiB, the checked run's result or None, batch run,
    runs tried).
    A check runs only where the process's resident memory, extrapolated the same way (it grows
    faster than the tensors' peak under remat: allocator and kernel-library memory), stays
    under 85% of this machine's."""
    runs = {int(b): required(remat, size, int(b)) for b in F.fit_batches}
    at_zero, per_image = _affine(runs, "peak", 0)
    if per_image <= 0:
        raise SystemExit(f"bench/memory.py: remat {remat}, {size}x{size}: the step peak does not "
                         f"grow between batches {', '.join(F.fit_batches)}; fit larger ones")
    predicted = int((F.budget_gib * GIB - at_zero) // per_image)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    batch, checked, tried = predicted, None, 0
    while (F.check and batch > max(0, predicted - 3)
           and _affine(runs, "rss", batch)[0] < 0.85 * physical):
        checked, tried = measure(remat, size, batch), tried + 1
        if checked and checked["peak"] <= F.budget_gib * GIB:
            break
        batch, checked = batch - 1, None
    return predicted, per_image / GIB, checked, batch, tried


def main(argv):
    del argv
    if F._worker:
        return worker(F._worker)
    from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset

    native = DATASET_SHAPES[from_preset(F.preset)[1]][0]
    step = ({remat: required(remat, native, F.batch_size) for remat in ("off", "on")}
            if F.step_rows else {})
    off = step.get("off")
    lines = [f"| remat | batch | step peak (tensors) | against remat off | state | peak RSS "
             f"(process) | step time | against remat off |", "|---|---|---|---|---|---|---|---|",
             ] if step else []
    for name, r in step.items():
        lines.append(
            f"| {name} | {F.batch_size} | {r['peak'] / GIB:.2f} GiB | "
            f"{r['peak'] / off['peak']:.2f}x | {r['state'] / GIB:.2f} GiB | "
            f"{r['rss'] / GIB:.2f} GiB ({r['rss'] / off['rss']:.2f}x) | {r['step']:.2f} s | "
            f"{r['step'] / off['step']:.2f}x |")
    if lines:
        lines.append("")
    lines += [f"| image size | remat | per image | largest batch in {F.budget_gib:g} GiB "
              "(predicted) | checked: step peak at the batch run |", "|---|---|---|---|---|"]
    for size in (int(s) for s in F.image_sizes):
        for remat in F.largest_remat:
            predicted, per_image, checked, batch, tried = largest(remat, size)
            check = (f"batch {batch}: {checked['peak'] / GIB:.2f} GiB, RSS "
                     f"{checked['rss'] / GIB:.2f} GiB, step {checked['step']:.1f} s"
                     if checked else f"none of {tried} batches from {predicted} down fit" if tried
                     else "not run: its process needs more memory than this machine has"
                     if F.check else "not run (--nocheck)")
            lines.append(f"| {size}x{size} | {remat} | {per_image:.3f} GiB | {predicted} | "
                         f"{check} |")
            print(lines[-1], flush=True)
    harness.report(f"preset {F.preset}, TensorFlow's CPU allocator", lines)


if __name__ == "__main__":
    app.run(main)
