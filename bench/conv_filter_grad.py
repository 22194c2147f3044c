"""The filter gradient of one shifted convolution: TensorFlow's Conv2DBackpropFilter against the
same sum as matrix products, in one run (on an AVX2 CPU with oneDNN's rewrites on, the filter
gradient was the largest single cost of a training step, twice the forward convolution).

    python bench/conv_filter_grad.py                      # the gated resnet's 2x3 convolutions
    python bench/conv_filter_grad.py --shapes=320x160,320x320 --size=32
    python bench/conv_filter_grad.py --training_step --preset=cifar10 --batch=16 --rounds=4
    python bench/conv_filter_grad.py --training_step --step_variants=padded_dy,products --rounds=5

--training_step: the trainer's whole step, traced once per filter gradient in one process
(--step_variants: model/conv.py's, its earlier form with a padded copy of dy per offset,
TensorFlow's), timed in alternation, A B A B ...: this machine's speed drifts by up
to 40% over minutes, so rows timed one after the other (train_throughput.py) can disagree;
pairs taken seconds apart cannot drift much.

dW[a, b] = sum over (n, h, w) of x_pad[n, h + a, w + b, :]^T dy[n, h, w, :]: `patches` concatenates
the 6 shifted views (im2col) and runs one (N*H*W, 6*C_in)^T (N*H*W, C_out) product;
`per_offset` runs 6 products on the views. Also times the forward convolution. Prints a table
(bench/harness.py) of milliseconds (median of 5) and the largest difference to TensorFlow's
gradient.
"""
import time

import harness

harness.setup(onednn=True)  # as train.py runs, before TensorFlow starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.model import conv  # noqa: E402

flags.DEFINE_list("shapes", ["320x160", "320x320"], "C_in x C_out of the 2x3 convolutions.")
flags.DEFINE_integer("size", 32, "Height and width of the output.")
flags.DEFINE_integer("batch", 16, "Images.")
flags.DEFINE_bool("training_step", False, "Time the trainer's step with each filter gradient.")
flags.DEFINE_string("preset", "cifar10", "--training_step: the preset whose model is trained.")
flags.DEFINE_integer("rounds", 4, "--training_step: timed steps of each, in alternation.")
flags.DEFINE_list("step_variants", ["products", "backend"], "--training_step: the filter "
                  "gradients to compare, the first the reference: products, padded_dy, einsum, "
                  "backend.")
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
        return padded_dy_filter_gradient(x, dy, (KH, KW, cin, cout))

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


def padded_dy_filter_gradient(x, dy, kernel_shape):
    """model/conv.py's filter gradient before the row views: a zero-padded copy of dy per
    offset, each one product with all of x (the sums are the same)."""
    kh, kw, cin, cout = kernel_shape
    flat_x = tf.reshape(x, (-1, cin))
    dk = [tf.matmul(flat_x, tf.reshape(tf.pad(dy, [[0, 0], [a, kh - 1 - a], [b, kw - 1 - b],
                                                   [0, 0]]), (-1, cout)), transpose_a=True)
          for a in range(kh) for b in range(kw)]
    return tf.reshape(tf.stack(dk), kernel_shape)


def einsum_filter_gradient(x, dy, kernel_shape):
    """model/conv.py's filter gradient with each product an einsum "nc,nd->cd" (its form
    before the transposed matmul)."""
    kh, kw, cin, cout = kernel_shape
    width = x.shape[2]
    rows_x = tf.reshape(x, (-1, cin))
    rows_dy = tf.reshape(tf.pad(dy, [[0, 0], [0, kh - 1], [0, kw - 1], [0, 0]]), (-1, cout))
    rows = tf.shape(rows_dy)[0] - (kh - 1) * width - (kw - 1)
    rows_dy = rows_dy[:rows]
    dk = [tf.einsum("nc,nd->cd", rows_x[a * width + b:a * width + b + rows], rows_dy)
          for a in range(kh) for b in range(kw)]
    return tf.reshape(tf.stack(dk), kernel_shape)


# --step_variants: FILTER_GRADIENT and the filter-gradient function each step is traced with
# (None: model/conv.py's), and the row's label.
STEP_VARIANTS = {"products": ("products", None, "model/conv.py"),
                 "padded_dy": ("products", padded_dy_filter_gradient,
                               "a padded copy of dy per offset"),
                 "einsum": ("products", einsum_filter_gradient, "each product an einsum"),
                 "backend": ("backend", None, "Conv2DBackpropFilter")}


def training_step():
    unknown = sorted(set(F.step_variants) - set(STEP_VARIANTS))
    if unknown:
        raise app.UsageError(f"--step_variants: {','.join(unknown)} not among "
                             f"{','.join(STEP_VARIANTS)}")
    trainer, batch = harness.preset_trainer(F.preset, F.batch)
    steps = {}
    project = conv.FILTER_GRADIENT, conv._filter_gradient
    for name in F.step_variants:  # both switches are read when the step is traced
        conv.FILTER_GRADIENT, function, _ = STEP_VARIANTS[name]
        conv._filter_gradient = function or project[1]
        steps[name] = trainer.new_train_step()
        float(steps[name](batch))
    conv.FILTER_GRADIENT, conv._filter_gradient = project
    times = {name: [] for name in steps}
    for _ in range(F.rounds):
        for name, step in steps.items():
            start = time.time()
            float(step(batch))
            times[name].append(time.time() - start)
    fmt = lambda ts: ", ".join(f"{t:.2f}" for t in ts)  # noqa: E731
    first = F.step_variants[0]
    lines = [f"| filter gradient | s/step, in order | median | time / {first}'s, per round "
             "(median) |", "|---|---|---|---|"]
    for name, ts in times.items():
        pairs = [t / f for t, f in zip(ts, times[first])]
        lines.append(f"| {name} ({STEP_VARIANTS[name][2]}) | {fmt(ts)} | {np.median(ts):.2f} s | "
                     f"{fmt(pairs)} ({np.median(pairs):.3f}) |")
    harness.report(f"the trainer's step, {F.preset}, batch {F.batch}, in alternation", lines)


def main(argv):
    del argv
    if F.training_step:
        return training_step()
    lines = ["| C_in -> C_out | forward conv | Conv2DBackpropFilter | x patches, one matmul "
             "(speed-up) | x views, 6 matmuls | dy padded, 6 matmuls | the project's "
             "(model/conv.py) | largest difference |", "|---|---|---|---|---|---|---|---|"]
    for shape in F.shapes:
        cin, cout = (int(v) for v in shape.split("x"))
        lines.append(row(cin, cout))
        print(lines[-1], flush=True)
    harness.report(f"2x3 convolution, {F.batch} images, {F.size}x{F.size} output, milliseconds",
                   lines)


if __name__ == "__main__":
    app.run(main)
