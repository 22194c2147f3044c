"""Training-step throughput of the shared Trainer (forward + backward + original Adam + EMA).

    python bench/train_throughput.py --preset=cifar10 --batch_size=16 --steps=5

Prints images/s and seconds per step after warm-up (the first step traces the graph); appends a
line to bench/RESULTS.md with the command, machine and versions.
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

from pixel_cnn_pp import data  # noqa: E402
from pixel_cnn_pp.presets import PRESETS  # noqa: E402
from pixel_cnn_pp.training import TrainConfig, Trainer  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is timed.")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("steps", 5, "Timed steps after one warm-up step.")
F = flags.FLAGS


def main(argv):
    del argv
    preset = dict(PRESETS[F.preset])
    dataset_name = preset.pop("dataset")
    config = TrainConfig(**{**preset, "batch_size": F.batch_size, "init_batch_size": F.batch_size})
    shape = (32, 32, 3) if dataset_name in ("cifar10", "imagenet32") else (8, 8, 1)
    images = np.random.RandomState(0).randint(0, 256, (F.batch_size * 2, *shape), np.uint8)
    fake = data._from_arrays("random", images, np.zeros(len(images)), F.batch_size, 10)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = Trainer(config, fake, strategy, "/tmp/bench_unused", log=lambda *_: None)
    trainer.restore_or_initialize()
    batch = next(iter(trainer._distributed(fake.train, None)))
    start = time.time()
    trainer._train_step(batch)
    warmup = time.time() - start
    times = []
    for _ in range(F.steps):
        start = time.time()
        float(trainer._train_step(batch))
        times.append(time.time() - start)
    step = float(np.median(times))
    line = (f"| {F.preset} | {trainer.model.count_params():,} | {F.batch_size} | {step:.2f} s | "
            f"{F.batch_size / step:.1f} | {warmup:.0f} s | {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__} | "
            f"`python bench/train_throughput.py --preset={F.preset} --batch_size={F.batch_size} "
            f"--steps={F.steps}` |")
    print("| preset | params | batch | s/step (median) | images/s | first step (trace) | machine | command |")
    print(line)
    with open(os.path.join(os.path.dirname(__file__), "RESULTS.md"), "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
    app.run(main)
