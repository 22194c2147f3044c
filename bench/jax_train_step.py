"""Training-step throughput and sampling time on the JAX backend (the GPU benchmark).

    KERAS_BACKEND=jax python bench/jax_train_step.py --batch_sizes=16,64 --precisions=float32,bf16
    KERAS_BACKEND=jax python bench/jax_train_step.py --preset=snail_cifar10 --batch_sizes=8
    KERAS_BACKEND=jax python bench/jax_train_step.py --sampling --naive_pixels=8
    KERAS_BACKEND=jax python bench/jax_train_step.py --batch_sizes=64 \
        --filter_gradients=backend,products --matmul_precision=default,highest
    KERAS_BACKEND=jax python bench/jax_train_step.py --batch_sizes=16,64 --precisions=float32 --remat

Needs no TensorFlow. The step is the one train.py runs: `TrainStep` of the preset's settings
(the model's summed-nats loss with dropout, the original Adam with the preset's learning rate,
decay and epsilon, the Polyak update with its decay), as one `jax.jit` of
`TrainStep.stateless_step` with its state donated. Reports images/s from the median
synchronised step and from back-to-back steps (dispatched without waiting, synchronised once at
the end), compile time, the compiled step's own memory (XLA's memory analysis: its arguments
and temporaries) and the process's peak device memory, per precision (one model built and
initialised for each), batch size, filter gradient of the stride-1 convolutions
(`model/conv.py`: "backend", the backend's own and train.py's choice on a GPU, or "products")
and float32 matmul precision (JAX's default lets XLA use TF32 on NVIDIA GPUs; "highest" is true
float32). --trace_dir: a
jax.profiler trace of two steps of the first row (`bench/profile_step.py --trace_dir`
summarises it). --sampling: 16 and 256 images, naive (one jitted full forward per pixel,
--naive_pixels timed and scaled) vs the cached sampler, warm, with its compile time apart.
Prints a table (bench/harness.py). Needs the project's metadata for its
registry: `pip install -e .` or the `pixelcnn_keras.egg-info` folder of such an install beside
the code.
"""
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import harness  # noqa: E402

harness.setup()  # no oneDNN setting: TensorFlow is not used

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from pixel_cnn_pp.model import conv, sampling  # noqa: E402
from pixel_cnn_pp.model.registry import build_model  # noqa: E402
from pixel_cnn_pp.model.train_step import TrainStep  # noqa: E402
from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model and optimiser settings are timed.")
flags.DEFINE_list("batch_sizes", ["16", "64"], "Batch sizes to time.")
flags.DEFINE_list("precisions", ["float32", "bf16"], "float32 and/or bf16 (mixed_bfloat16).")
flags.DEFINE_integer("steps", 10, "Timed steps after the compiling one (each way).")
flags.DEFINE_integer("nr_resnet", 0, "Override the preset's nr_resnet (0: keep).")
flags.DEFINE_integer("nr_filters", 0, "Override the preset's nr_filters (0: keep).")
flags.DEFINE_bool("remat", False, "Time the model with remat=True (every gated resnet "
                  "recomputed in the backward pass): run it beside a run without, same machine.")
flags.DEFINE_bool("sampling", False, "Time sampling of 16 and 256 images instead of training.")
flags.DEFINE_integer("naive_pixels", 8, "--sampling: naive pixels timed and scaled.")
flags.DEFINE_list("filter_gradients", [conv.DEFAULT_FILTER_GRADIENT],
                  "model/conv.py's FILTER_GRADIENT, one row each: "
                  f"{', '.join(conv.FILTER_GRADIENTS)}.")
flags.DEFINE_list("matmul_precision", ["default"],
                  "jax_default_matmul_precision, one row each: default, high, highest.")
flags.DEFINE_string("trace_dir", None,
                    "Also write a jax.profiler trace of two steps of the first row here.")
F = flags.FLAGS
POLICIES = {"float32": "float32", "bf16": "mixed_bfloat16"}


def build(precision, batch):
    """(TrainStep of the preset, uint8 images (batch, H, W, C)), initialised as train.py does:
    shadows first, then data-dependent init on the preset's init batch (its first images)."""
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters", "remat") if getattr(F, k)}
    config, dataset, _ = from_preset(F.preset, mixed_precision=POLICIES[precision], **overrides)
    shape = DATASET_SHAPES[dataset]
    model = build_model(config.model, shape, **config.model_options)
    model.build_all()
    step = TrainStep(model, config.learning_rate, config.lr_decay, config.adam_epsilon,
                     config.polyak_decay)
    images = np.random.RandomState(0).randint(
        0, 256, (max(batch, config.init_batch_size), *shape), np.uint8)
    model.initialize(images[:config.init_batch_size])
    return step, images[:batch]


def train_rows(precision, batch_sizes):
    """One table row per batch size, filter gradient and matmul precision, all from one
    model built and initialised once (a fresh copy of its state each): only the jitted step
    differs. (The initialisation takes about a minute on a GPU: eager ops, each compiled.)"""
    start = time.time()
    step, images = build(precision, max(batch_sizes))
    print(f"{precision}: built and initialised in {time.time() - start:.0f} s", flush=True)
    for batch in batch_sizes:
        for filter_gradient in F.filter_gradients:
            for matmul_precision in F.matmul_precision:
                yield train_row(step, jnp.asarray(images[:batch]), precision, filter_gradient,
                                matmul_precision)


def train_row(step, images, precision, filter_gradient, matmul_precision):
    conv.FILTER_GRADIENT = filter_gradient  # both read when the step is traced
    jax.config.update("jax_default_matmul_precision",
                      None if matmul_precision == "default" else matmul_precision)
    # The state's buffers are donated (updated in place), as Keras's JAX trainer and the Flax
    # baseline do. Copied first: the shadows may share buffers with the weights they start from,
    # and the model's variables keep theirs for the next row.
    jitted = jax.jit(step.stateless_step, donate_argnums=0)
    state = jax.tree_util.tree_map(jnp.copy, step.state())
    batch = images.shape[0]
    start = time.time()
    jitted = jitted.lower(state, images).compile()
    memory = jitted.memory_analysis()
    # The step's own footprint, per row (the process's peak below accumulates over rows):
    # its arguments (the state, donated, and the images) plus XLA's temporaries.
    footprint = (memory.argument_size_in_bytes + memory.temp_size_in_bytes) if memory else None
    state, loss = jitted(state, images)
    loss.block_until_ready()
    compile_s = time.time() - start
    print(f"first step (compile) {compile_s:.0f} s", flush=True)
    times = []
    for _ in range(F.steps):  # synchronised: each step waits for the previous one
        start = time.time()
        state, loss = jitted(state, images)
        loss.block_until_ready()
        times.append(time.time() - start)
    start = time.time()
    for _ in range(F.steps):  # back to back: dispatched without waiting
        state, loss = jitted(state, images)
    loss.block_until_ready()
    back_to_back = F.steps * batch / (time.time() - start)
    if F.trace_dir:
        with jax.profiler.trace(F.trace_dir):
            for _ in range(2):
                state, loss = jitted(state, images)
                loss.block_until_ready()
        F.trace_dir = None  # the first row only
    seconds = float(np.median(times))
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return (f"| {precision} | {batch} | {filter_gradient} | {matmul_precision} | "
            f"{batch / seconds:.0f} | {back_to_back:.0f} | "
            f"{seconds * 1000:.1f} ms | {compile_s:.0f} s | "
            f"{'%.1f GiB' % (footprint / 2**30) if footprint else 'n/a'} | "
            f"{'%.1f GiB' % (peak / 2**30) if peak else 'n/a'} | {float(loss):.1f} |")


def sampling_rows():
    """Naive (jitted forwards, scaled) and the cached sampler at 16 and 256 images: the first
    call (compile included) and a second one, synchronised (model.sample returns numpy)."""
    step, _ = build("float32", 16)
    model = step.model
    forward = sampling.compiled_for(model, "bench_forward", lambda x: model(x)[:, 0, 0])
    pixels = model.image_shape[0] * model.image_shape[1]
    rows = []
    for n in (16, 256):
        x = jnp.zeros((n, *model.image_shape))
        forward(x).block_until_ready()
        start = time.time()
        for _ in range(F.naive_pixels):
            forward(x).block_until_ready()
        naive = (time.time() - start) * pixels / F.naive_pixels
        start = time.time()
        model.sample(n, seed=1)
        first = time.time() - start
        start = time.time()
        model.sample(n, seed=2)
        warm = time.time() - start
        rows.append(f"| {n} images | {naive:.2f} s ({F.naive_pixels} of {pixels} pixels timed, "
                    f"scaled) | {warm:.2f} s | {first - warm:.0f} s | {naive / warm:.0f}x |")
        print(rows[-1], flush=True)
    return rows


def main(argv):
    del argv
    unknown = sorted(set(F.filter_gradients) - set(conv.FILTER_GRADIENTS))
    if unknown:
        raise app.UsageError(f"--filter_gradients={','.join(unknown)} not among "
                             f"{', '.join(conv.FILTER_GRADIENTS)}")
    if F.sampling:
        lines = ["| what | naive | cached (warm) | compile (first call - warm) | speed-up |",
                 "|---|---|---|---|---|", *sampling_rows()]
    else:
        lines = ["| precision | batch | filter gradient | matmul precision | "
                 "images/s (median step) | images/s (back to back) | step (median) | first step "
                 "(compile) | step's memory (state + images + XLA temporaries) | peak device "
                 "memory (process, so far) | loss (nats) |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        for precision in F.precisions:
            for row in train_rows(precision, [int(b) for b in F.batch_sizes]):
                lines.append(row)
                print(row, flush=True)
    harness.report(f"preset {F.preset}", lines)


if __name__ == "__main__":
    app.run(main)
