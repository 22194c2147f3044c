"""The optimizer + Polyak part of a training step alone, on one device: the original Adam and
the EMA over every variable of a preset's model, applied to fixed random gradients, as a
tf.function and as one XLA cluster (jit_compile). Answers whether a fused update would pay off,
and what the update costs to trace (graph ops, seconds): start-up time, most of the CI's.

    python bench/update_step.py --preset=cifar10

Prints one table (bench/harness.py).
"""
import time

import harness

harness.setup(onednn=True)  # as train.py runs, before TensorFlow starts

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.model.registry import build_model  # noqa: E402
from pixel_cnn_pp.model.train_step import TrainStep  # noqa: E402
from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model's variables are updated.")
flags.DEFINE_integer("repeats", 3, "Timed updates per variant (after one warm-up).")
F = flags.FLAGS


def main(argv):
    del argv
    config, dataset, _ = from_preset(F.preset)
    model = build_model(config.model, DATASET_SHAPES[dataset], **config.model_options)
    model.build_all()
    step = TrainStep(model, config.learning_rate, config.lr_decay, config.adam_epsilon,
                     config.polyak_decay)
    grads = [tf.random.normal(v.shape) * 1e-3 for v in model.trainable_variables]

    def update(grads):
        step.apply(grads)
        step.update_average()

    rows = []
    for name, fn in (("tf.function", tf.function(update)),
                     ("XLA (jit_compile)", tf.function(update, jit_compile=True))):
        start = time.perf_counter()
        graph = fn.get_concrete_function(grads).graph
        trace = time.perf_counter() - start
        fn(grads)
        start = time.perf_counter()
        for _ in range(F.repeats):
            fn(grads)
        float(model.trainable_variables[0].numpy().sum())  # wait for the last update
        rows.append(f"| {name} | {(time.perf_counter() - start) / F.repeats:.3f} s | "
                    f"{trace:.1f} s | {len(graph.get_operations()):,} |")
    harness.report(f"preset {F.preset}, {len(model.trainable_variables)} variables, "
                   f"{model.count_params():,} parameters",
                   ["| update (Adam + Polyak) | seconds | trace | graph ops |",
                    "|---|---|---|---|", *rows])


if __name__ == "__main__":
    app.run(main)
