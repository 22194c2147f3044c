"""Where a training step spends its time, by TensorFlow op type (tf.profiler trace of one step).

    python bench/profile_step.py --preset=cifar10 --batch_size=16
    python bench/profile_step.py --trace_dir=/tmp/trace --steps_traced=2   # a GPU trace

A trace with a GPU plane (`bench/jax_train_step.py --trace_dir`, or any jax.profiler trace) is
summarised by kernel instead: kernels, GPU busy time and span per step, the time by kind of
kernel (the convolutions' forward, input-gradient and filter-gradient kernels by cuDNN's names,
other matmuls, XLA's elementwise and reduction fusions, copies) and the top kernels.

Runs one traced warm-up step, profiles the next one, and prints the op types by total time
(ops of the same type summed; ops run in parallel on the 2 cores, so the shares can add up to
more than the step's wall time). Prints the top rows (bench/harness.py).
"""
import collections
import tempfile
import time

import harness

harness.setup(onednn=True)  # as train.py runs, before TensorFlow starts

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.runtime import hardware  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is profiled.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("top", 8, "Op types to list.")
flags.DEFINE_string("trace_dir", None, "Only summarise an earlier trace (its folder).")
flags.DEFINE_float("step_seconds", 0.0, "With --trace_dir: the wall time of the traced step.")
flags.DEFINE_integer("steps_traced", 1, "With --trace_dir of a GPU trace: steps in the trace.")
F = flags.FLAGS


def kernel_kind(name):
    """The kind of a GPU kernel, from its name (cuDNN's and CUTLASS's, XLA's fusion names)."""
    n = name.lower()
    if "memset" in n or "memcpy" in n:
        return "copies and memsets"
    for part, kind in (("fprop", "forward"), ("dgrad", "input gradient"),
                       ("wgrad", "filter gradient")):
        if part in n:
            return f"convolutions: {kind} ({part})"
    if any(k in n for k in ("xmma", "cudnn", "cutlass", "gemm", "conv")):
        return "matmuls and other convolution kernels (cuBLAS, CUTLASS, XLA gemm fusions)"
    if "reduce" in n:
        return "XLA reduction fusions"
    if "fusion" in n:
        return "XLA elementwise fusions"
    return "other"


def gpu_report(plane, steps):
    """Markdown lines: the kernels of a GPU plane of `steps` traced steps, per step."""
    names = {k: m.name for k, m in plane.event_metadata.items()}
    events = [(line.timestamp_ns * 1000 + e.offset_ps, e.duration_ps, names.get(e.metadata_id, ""))
              for line in plane.lines for e in line.events]
    busy = sum(d for _, d, _ in events)
    span = max(a + d for a, d, _ in events) - min(a for a, _, _ in events)
    kinds = collections.defaultdict(lambda: [0, 0])
    kernels = collections.defaultdict(lambda: [0, 0])
    for _, duration, name in events:
        for table, key in ((kinds, kernel_kind(name)), (kernels, name[:100])):
            table[key][0] += duration
            table[key][1] += 1
    ms = 1e-9 / steps
    lines = [f"{len(events) / steps:.0f} kernels a step; GPU busy {busy * ms:.1f} ms a step, "
             f"first kernel start to last kernel end {span * ms:.1f} ms a step ({steps} steps "
             "traced)\n", "| kernels | ms a step | share of busy time | count a step |",
             "|---|---|---|---|"]
    ranked = sorted(kinds.items(), key=lambda kv: -kv[1][0])
    ranked += [(f"`{k}`", v) for k, v in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:F.top]]
    for kind, (duration, count) in ranked:
        lines.append(f"| {kind} | {duration * ms:.2f} | {100 * duration / busy:.1f}% | "
                     f"{count / steps:.0f} |")
    return lines


def main(argv):
    del argv
    if F.trace_dir:
        return report(F.trace_dir, F.step_seconds)
    hardware.choose_filter_gradient()
    trainer, batch = harness.preset_trainer(F.preset, F.batch_size)
    float(trainer.train_step(batch))  # trace
    logdir = tempfile.mkdtemp(prefix="pixelcnn_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.time()
    float(trainer.train_step(batch))
    step = time.time() - start
    tf.profiler.experimental.stop()
    report(logdir, step)


def report(logdir, step):
    space = harness.xspace(logdir)
    # A trace summarised later (--trace_dir) was taken elsewhere: the header names the trace.
    machine = f"trace {F.trace_dir}" if F.trace_dir else None
    gpus = [p for p in space.planes if p.name.startswith("/device:GPU:")]
    if gpus:
        return harness.report(gpus[0].name, gpu_report(gpus[0], F.steps_traced), machine)
    totals = sorted(harness.op_times(space).items(), key=lambda kv: -kv[1][0])
    lines = ["| op type | total time | share of step wall time | count |", "|---|---|---|---|"]
    for kind, (seconds, count) in totals[:F.top]:
        share = f"{100 * seconds / step:.0f}%" if step else "n/a"  # --step_seconds not given
        lines.append(f"| {kind} | {seconds:.2f} s | {share} | {count} |")
    what = "" if F.trace_dir else f"preset {F.preset}, batch {F.batch_size}, "
    harness.report(f"{what}profiled step {step:.1f} s wall", lines, machine)


if __name__ == "__main__":
    app.run(main)
