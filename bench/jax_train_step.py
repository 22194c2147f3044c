"""Training-step throughput and sampling time on the JAX backend (the GPU benchmark).

    KERAS_BACKEND=jax python bench/jax_train_step.py --batch_sizes=16,64 --precisions=float32,bf16
    KERAS_BACKEND=jax python bench/jax_train_step.py --sampling --naive_pixels=8

Needs no TensorFlow: the same Keras model code, run as one `jax.jit` step (forward, backward,
the original Adam through `stateless_apply`, Polyak averaging), variables passed explicitly.
Training: images/s (median step after the compiling first one), compile time and peak device
memory, per batch size and precision. --sampling: 16 images, naive (one jitted full forward per
pixel, --naive_pixels timed and scaled) vs the cached sampler (fast_sampler.py). Prints a table
and appends it to bench/RESULTS.md.
"""
import os
import platform
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.results import record  # noqa: E402

from pixel_cnn_pp.model import PixelCNNpp  # noqa: E402
from pixel_cnn_pp.optim import OriginalAdam  # noqa: E402

flags.DEFINE_list("batch_sizes", ["16", "64"], "Batch sizes to time.")
flags.DEFINE_list("precisions", ["float32", "bf16"], "float32 and/or bf16 (mixed_bfloat16).")
flags.DEFINE_integer("steps", 10, "Timed steps after the compiling one.")
flags.DEFINE_integer("nr_resnet", 5, "Paper configuration by default.")
flags.DEFINE_integer("nr_filters", 160, "Paper configuration by default.")
flags.DEFINE_integer("image_size", 32, "Height and width.")
flags.DEFINE_bool("sampling", False, "Time sampling of 16 images instead of training.")
flags.DEFINE_integer("naive_pixels", 8, "--sampling: naive pixels timed and scaled.")
F = flags.FLAGS
POLICIES = {"float32": "float32", "bf16": "mixed_bfloat16"}


def build(precision, batch):
    keras.mixed_precision.set_global_policy(POLICIES[precision])
    size = F.image_size
    model = PixelCNNpp(image_shape=(size, size, 3), nr_resnet=F.nr_resnet,
                       nr_filters=F.nr_filters, dropout_p=0.5)
    model.build_all()
    images = np.random.RandomState(0).randint(0, 256, (batch, size, size, 3), np.uint8)
    model.initialize(images[:16])
    keras.mixed_precision.set_global_policy("float32")
    return model, images


def train_row(precision, batch):
    model, images = build(precision, batch)
    optimizer = OriginalAdam(1e-3, lr_decay=0.999995)
    optimizer.build(model.trainable_variables)
    x = (jnp.asarray(images, jnp.float32) - 127.5) / 127.5

    def loss_fn(trainable, non_trainable, x):
        out, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        log_prob = model.distribution.log_prob(x, out.astype(jnp.float32))  # float32 loss
        return -jnp.sum(log_prob), non_trainable

    @jax.jit
    def step(trainable, non_trainable, opt_vars, ema, x):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, x)
        trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
        ema = [e - (1.0 - 0.9995) * (e - t) for e, t in zip(ema, trainable)]
        return trainable, non_trainable, opt_vars, ema, loss

    state = ([v.value for v in model.trainable_variables],
             [v.value for v in model.non_trainable_variables],
             [v.value for v in optimizer.variables])
    state = (*state, list(state[0]))
    start = time.time()
    *state, loss = step(*state, x)
    loss.block_until_ready()
    compile_s = time.time() - start
    times = []
    for _ in range(F.steps):
        start = time.time()
        *state, loss = step(*state, x)
        loss.block_until_ready()
        times.append(time.time() - start)
    seconds = float(np.median(times))
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return (f"| {precision} | {batch} | {batch / seconds:.0f} | {seconds * 1000:.1f} ms | "
            f"{compile_s:.0f} s | {'%.1f GiB' % (peak / 2**30) if peak else 'n/a'} | "
            f"{float(loss):.1f} |")


def sampling_row():
    model, _ = build("float32", 16)
    from pixel_cnn_pp.fast_sampler import compiled_for
    forward = compiled_for(model, "bench_forward", lambda x: model(x)[:, 0, 0])
    x = jnp.zeros((16, *model.image_shape))
    forward(x).block_until_ready()
    start = time.time()
    for _ in range(F.naive_pixels):
        forward(x).block_until_ready()
    pixels = F.image_size ** 2
    naive = (time.time() - start) * pixels / F.naive_pixels
    start = time.time()
    model.sample(16, seed=1, method="fast")
    fast = time.time() - start
    return (f"| 16 images | {naive:.1f} s ({F.naive_pixels} of {pixels} pixels timed, scaled) | "
            f"{fast:.1f} s (compile included) | {naive / fast:.1f}x |")


def main(argv):
    del argv
    device = jax.devices()[0]
    head = (f"\n`KERAS_BACKEND=jax python bench/jax_train_step.py {' '.join(sys.argv[1:])}` "
            f"({device.device_kind}, JAX {jax.__version__}, Keras {keras.__version__}, "
            f"{platform.machine()}, {time.strftime('%Y-%m-%d')}): PixelCNN++ nr_resnet "
            f"{F.nr_resnet}, {F.nr_filters} filters, {F.image_size}x{F.image_size}x3\n")
    if F.sampling:
        lines = [head, "| what | naive | cached | speed-up |", "|---|---|---|---|",
                 sampling_row()]
    else:
        lines = [head, "| precision | batch | images/s | step (median) | first step (compile) "
                 "| peak device memory | loss (nats) |", "|---|---|---|---|---|---|---|"]
        for precision in F.precisions:
            for batch in F.batch_sizes:
                lines.append(train_row(precision, int(batch)))
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    record(text)


if __name__ == "__main__":
    app.run(main)
