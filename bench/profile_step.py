"""Where a training step spends its time, by TensorFlow op type (tf.profiler trace of one step).

    python bench/profile_step.py --preset=cifar10 --batch_size=16

Runs one traced warm-up step, profiles the next one, and prints the op types by total time
(ops of the same type summed; ops run in parallel on the 2 cores, so the shares can add up to
more than the step's wall time). Appends the top rows to bench/RESULTS.md.
"""
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pixel_cnn_pp  # noqa: E402,F401  (first, as train.py: its TensorFlow defaults)
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.harness import record  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

from bench.harness import preset_trainer  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is profiled.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("top", 8, "Op types to list.")
flags.DEFINE_string("trace_dir", None, "Only summarise an earlier trace (its folder).")
flags.DEFINE_float("step_seconds", 0.0, "With --trace_dir: the wall time of the traced step.")
F = flags.FLAGS


def op_times(logdir):
    """{op type: (seconds, count)} from the host plane of the trace in `logdir`."""
    path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor threads
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "")  # "op name:OpType" for TF ops
                if ":" not in name or "::" in name:
                    continue
                kind = name.rsplit(":", 1)[1]
                totals[kind][0] += event.duration_ps * 1e-12
                totals[kind][1] += 1
    return totals


def main(argv):
    del argv
    if F.trace_dir:
        return report(F.trace_dir, F.step_seconds)
    trainer, batch = preset_trainer(F.preset, F.batch_size)
    float(trainer.train_step(batch))  # trace
    logdir = tempfile.mkdtemp(prefix="pixelcnn_profile_")
    tf.profiler.experimental.start(logdir)
    start = time.time()
    float(trainer.train_step(batch))
    step = time.time() - start
    tf.profiler.experimental.stop()
    report(logdir, step)


def report(logdir, step):
    totals = sorted(op_times(logdir).items(), key=lambda kv: -kv[1][0])
    lines = [f"\n`python bench/profile_step.py {' '.join(sys.argv[1:])}` "
             f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, TF {tf.__version__}): "
             f"profiled step {step:.1f} s wall\n",
             "| op type | total time | share of step wall time | count |", "|---|---|---|---|"]
    for kind, (seconds, count) in totals[:F.top]:
        lines.append(f"| {kind} | {seconds:.2f} s | {100 * seconds / step:.0f}% | {count} |")
    text = "\n".join(lines) + "\n"
    record(text)


if __name__ == "__main__":
    app.run(main)
