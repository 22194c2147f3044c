"""The filter gradient of one shifted convolution: TensorFlow's Conv2DBackpropFilter against the
same sum as matrix products, in one run (a what-if for #15: after the oneDNN rewrites the filter
gradient is the largest single cost of a CPU training step, twice the forward convolution).

    python bench/conv_filter_grad.py                      # the gated resnet's 2x3 convolutions
    python bench/conv_filter_grad.py --shapes=320x160,320x320 --size=32
    python bench/conv_filter_grad.py --training_step --preset=cifar10 --batch=16 --rounds=4

--training_step: the trainer's whole step, traced twice in one process (model/conv.py's filter
gradient and TensorFlow's), timed in alternation, A B A B ...: this machine's speed drifts by up
to 40% over minutes, so rows timed one after the other (train_throughput.py) can disagree;
pairs taken seconds apart cannot drift much.

dW[a, b] = sum over (n, h, w) of x_pad[n, h + a, w + b, :]^T dy[n, h, w, :]: `patches` concatenates
the 6 shifted views (im2col) and runs one (N*H*W, 6*C_in)^T (N*H*W, C_out) product;
`per_offset` runs 6 products on the views. Also times the forward convolution. Prints
milliseconds (median of 5) and the largest difference to TensorFlow's gradient.
"""
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pixel_cnn_pp  # noqa: E402,F401  (the project's TensorFlow defaults, before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.harness import record  # noqa: E402
from pixel_cnn_pp.model import conv  # noqa: E402

flags.DEFINE_list("shapes", ["320x160", "320x320"], "C_in x C_out of the 2x3 convolutions.")
flags.DEFINE_integer("size", 32, "Height and width of the output.")
flags.DEFINE_integer("batch", 16, "Images.")
flags.DEFINE_bool("training_step", False, "Time the trainer's step with each filter gradient.")
flags.DEFINE_string("preset", "cifar10", "--training_step: the preset whose model is trained.")
flags.DEFINE_integer("rounds", 4, "--training_step: timed steps of each, in alternation.")
F = flags.FLAGS
KH, KW = 2, 3


def timed(fn):
    fn()
    times = []
    for _ in range(5):
        start = time.time()
        fn().numpy()
        times.append(time.time() - start)
    return 1000 * float(np.median(times))


def row(cin, cout):
    rs = np.random.RandomState(0)
    n, h = F.batch, F.size
    x = tf.constant(rs.randn(n, h + KH - 1, h + KW - 1, cin).astype(np.float32))
    dy = tf.constant(rs.randn(n, h, h, cout).astype(np.float32))
    kernel = tf.Variable(rs.randn(KH, KW, cin, cout).astype(np.float32) * 0.05)
    views = lambda: [x[:, a:a + h, b:b + h] for a in range(KH) for b in range(KW)]  # noqa: E731
    flat_dy = lambda: tf.reshape(dy, (-1, cout))  # noqa: E731

    @tf.function
    def backprop_filter():
        with tf.GradientTape() as tape:
            y = tf.nn.conv2d(x, kernel, 1, "VALID")
        return tape.gradient(y, kernel, output_gradients=dy)

    @tf.function
    def patches():
        p = tf.reshape(tf.concat(views(), axis=-1), (-1, KH * KW * cin))
        return tf.reshape(tf.matmul(p, flat_dy(), transpose_a=True), (KH, KW, cin, cout))

    @tf.function
    def per_offset():
        grads = [tf.matmul(tf.reshape(v, (-1, cin)), flat_dy(), transpose_a=True)
                 for v in views()]
        return tf.reshape(tf.stack(grads), (KH, KW, cin, cout))

    @tf.function
    def padded_dy():
        shifted = [tf.pad(dy, [[0, 0], [a, KH - 1 - a], [b, KW - 1 - b], [0, 0]])
                   for a in range(KH) for b in range(KW)]
        return tf.stack([tf.matmul(tf.reshape(x, (-1, cin)), tf.reshape(p, (-1, cout)),
                                   transpose_a=True) for p in shifted])

    @tf.function
    def project():
        return conv._filter_gradient(x, dy, (KH, KW, cin, cout))

    @tf.function
    def forward():
        return tf.nn.conv2d(x, kernel, 1, "VALID")

    reference = backprop_filter().numpy()
    others = (patches, per_offset, padded_dy, project)
    diff = max(float(np.max(np.abs(np.reshape(f().numpy(), reference.shape) - reference)))
               for f in others)
    ms = {f.__name__: timed(f) for f in (backprop_filter, forward) + others}
    return (f"| {cin} -> {cout} | {ms['forward']:.0f} | {ms['backprop_filter']:.0f} | "
            f"{ms['patches']:.0f} ({ms['backprop_filter'] / ms['patches']:.2f}x) | "
            f"{ms['per_offset']:.0f} ({ms['backprop_filter'] / ms['per_offset']:.2f}x) | "
            f"{ms['padded_dy']:.0f} ({ms['backprop_filter'] / ms['padded_dy']:.2f}x) | "
            f"{ms['project']:.0f} ({ms['backprop_filter'] / ms['project']:.2f}x) | "
            f"{diff:.1e} of {float(np.max(np.abs(reference))):.1e} |")


def training_step():
    from bench.harness import preset_trainer
    trainer, batch = preset_trainer(F.preset, F.batch)
    steps = {}
    for mode in ("products", "backend"):  # FILTER_GRADIENT is read when the step is traced
        conv.FILTER_GRADIENT = mode
        steps[mode] = trainer.new_train_step()
        float(steps[mode](batch))
    conv.FILTER_GRADIENT = "auto"
    times = {mode: [] for mode in steps}
    for _ in range(F.rounds):
        for mode, step in steps.items():
            start = time.time()
            float(step(batch))
            times[mode].append(time.time() - start)
    pairs = [b / p for p, b in zip(times["products"], times["backend"])]
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    return [f"\n`python bench/conv_filter_grad.py {' '.join(sys.argv[1:])}` ({os.cpu_count()} "
            f"cores, TF {tf.__version__}, TF_ENABLE_ONEDNN_OPTS="
            f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, {time.strftime('%Y-%m-%d')}): the "
            f"trainer's step, {F.preset}, batch {F.batch}, in alternation\n",
            "| filter gradient | s/step, in order | median |", "|---|---|---|",
            f"| products (model/conv.py) | {fmt(times['products'])} | "
            f"{np.median(times['products']):.2f} s |",
            f"| backend (Conv2DBackpropFilter) | {fmt(times['backend'])} | "
            f"{np.median(times['backend']):.2f} s |",
            f"\nSpeed-up of each pair (backend / products): {fmt(pairs)}; median "
            f"{np.median(pairs):.2f}x."]


def main(argv):
    del argv
    if F.training_step:
        record("\n".join(training_step()) + "\n")
        return
    lines = [f"\n`python bench/conv_filter_grad.py {' '.join(sys.argv[1:])}` ({os.cpu_count()} "
             f"cores, TF {tf.__version__}, TF_ENABLE_ONEDNN_OPTS="
             f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, {time.strftime('%Y-%m-%d')}): 2x3 "
             f"convolution, {F.batch} images, {F.size}x{F.size} output, milliseconds\n",
             "| C_in -> C_out | forward conv | Conv2DBackpropFilter | x patches, one matmul "
             "(speed-up) | x views, 6 matmuls | dy padded, 6 matmuls | the project's "
             "(model/conv.py) | largest difference |",
             "|---|---|---|---|---|---|---|---|"]
    for shape in F.shapes:
        cin, cout = (int(v) for v in shape.split("x"))
        lines.append(row(cin, cout))
        print(lines[-1], flush=True)
    record("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
