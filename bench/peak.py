"""How close to the machine's float32 peak the training step and the cached sampler run, in one
run: this machine's matrix-multiply rate (one large float32 matmul, the best a dense kernel
does here), then each workload's achieved GFLOP/s as a fraction of it.

    python bench/peak.py                                   # PixelCNN++ paper configuration
    python bench/peak.py --preset=snail_cifar10 --batch_size=8
    python bench/peak.py --nr_resnet=1 --nr_filters=32 --num_samples=4 --steps=1   # quick

FLOPs are counted, not measured: TensorFlow's graph profiler (`float_operation`: 2 per
multiply-add of Conv2D, MatMul and their transposes, from the static shapes of the model's
forward pass on one image; elementwise ops add their element counts). A training step counts
3 forward passes per image (the forward, and the backward's two products per layer: the input
gradient and the filter gradient, each one forward's multiply-adds). The cached sampler counts
one forward pass per image: what an ideal cache computes (each layer's output at each position
once); its fraction says how far the real sampler, which also reads its caches and runs one
small step per pixel, is from that ideal. Times are medians after a warm-up call.
"""
import time

import harness

harness.setup(onednn=True)  # as train.py runs

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.runtime import hardware  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is measured.")
flags.DEFINE_integer("batch_size", 16, "Images per training step.")
flags.DEFINE_integer("num_samples", 16, "Images per sampling call.")
flags.DEFINE_integer("steps", 3, "Timed training steps (after one warm-up step).")
flags.DEFINE_integer("sample_rounds", 1, "Timed sampling calls (after one warm-up call).")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square matrices of the matmul.")
flags.DEFINE_integer("nr_resnet", 0, "Override the preset's nr_resnet (0: keep).")
flags.DEFINE_integer("nr_filters", 0, "Override the preset's nr_filters (0: keep).")
F = flags.FLAGS


def median_seconds(fn, rounds):
    fn()  # warm-up: tracing and first-call allocations apart
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_rate(n):
    """GFLOP/s of an (n, n) @ (n, n) float32 matmul: the machine's dense float32 rate."""
    a = tf.random.stateless_normal((n, n), (1, 2))
    b = tf.random.stateless_normal((n, n), (3, 4))
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return 2 * n ** 3 / median_seconds(lambda: product().numpy(), 5) / 1e9


def forward_flops(model):
    """FLOPs of the model's forward pass on one image (TensorFlow's graph profiler)."""
    from tensorflow.python.profiler import model_analyzer, option_builder
    spec = tf.TensorSpec((1,) + model.x_shape, tf.float32)
    graph = tf.function(lambda x: model(x)).get_concrete_function(spec).graph
    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return model_analyzer.profile(graph, options=options).total_float_ops


def main(argv):
    del argv
    hardware.choose_filter_gradient()
    peak = matmul_rate(F.matmul_size)
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters") if getattr(F, k)}
    trainer, batch = harness.preset_trainer(F.preset, F.batch_size, **overrides)
    model = trainer.model
    forward = forward_flops(model)
    step = median_seconds(lambda: float(trainer.train_step(batch)), F.steps)
    sample = median_seconds(lambda: model.sample(F.num_samples, seed=1), F.sample_rounds)
    rows = [("float32 matmul", f"{F.matmul_size}^3 x 2", 2 * F.matmul_size ** 3, None, peak),
            ("training step", f"batch {F.batch_size}, 3 forwards an image",
             3 * forward * F.batch_size, step, None),
            ("cached sampler", f"{F.num_samples} images, 1 forward an image",
             forward * F.num_samples, sample, None)]
    lines = ["| what | counted | GFLOP | time | GFLOP/s | fraction of the matmul rate |",
             "|---|---|---|---|---|---|"]
    for what, counted, flops, seconds, rate in rows:
        rate = rate if seconds is None else flops / seconds / 1e9
        time_text = "" if seconds is None else f"{seconds:.2f} s"
        lines.append(f"| {what} | {counted} | {flops / 1e9:.1f} | {time_text} | {rate:.1f} | "
                     f"{rate / peak:.3f} |")
    lines.append(f"\nOne forward pass: {forward / 1e9:.2f} GFLOP an image "
                 f"({model.count_params():,} parameters).")
    harness.report(f"{F.preset}{' with ' + str(overrides) if overrides else ''}: achieved "
                   "rates against this machine's float32 matmul rate", lines)


if __name__ == "__main__":
    app.run(main)
