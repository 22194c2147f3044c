"""Samplers of every model, in `keras.ops`: the original's naive sampler and the cached one.

Naive (`nn.py`'s `sample_from_model` loop in the original `train.py`): one full forward pass
per pixel in raster order, the continuous sample fed back.

Cached, after Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive
Models", at row granularity: for pixel (i, j) the network runs on one image row only under a
`passes.RowStep` context (row i at full resolution, i//2 and i//4 below), each causal
convolution taking the rows above its input from a cache of values that are already final; the
half- and quarter-resolution levels change only on rows i = 0 mod 2 and 0 mod 4 and are held
otherwise. Each step costs about 1/H of a forward pass. After a row's last pixel the row is run
once more so that the cache holds its final values.

Both draw the same uniforms in the same order from one seed generator, so they give the same
samples for a seed. The row-sized convolutions round differently from the full-size ones (about
1e-6), so a value that close to a level boundary can round to the neighbouring uint8 level.
"""
import weakref

import keras
from keras import ops

from pixel_cnn_pp.model.mixture import UNIFORM_MIN
from pixel_cnn_pp.model.passes import RowStep

_CACHE = weakref.WeakKeyDictionary()  # model -> {name: compiled function}


def compiled_for(model, name, fn, static_argnums=()):
    """`fn` (which runs `model`) compiled once per model and input signature: tf.function on
    TensorFlow; on JAX, jax.jit with the model's variables passed in through a
    `keras.StatelessScope`, so new weights (e.g. the EMA ones) are seen without a new trace.
    `static_argnums`: Python values that select the program (traced once per value). Other
    backends run `fn` op by op. The only backend-specific code of the samplers."""
    functions = _CACHE.setdefault(model, {})
    if name not in functions:
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf  # only on the TensorFlow backend
            functions[name] = tf.function(fn)
        elif backend == "jax":
            import jax
            variables = list(model.variables)

            def pure(values, *args):
                with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                    return fn(*args)

            jitted = jax.jit(pure, static_argnums=tuple(1 + i for i in static_argnums))
            functions[name] = lambda *args: jitted([v.value for v in variables], *args)
        else:
            functions[name] = fn
    return functions[name]


def _draw(model, n, seed_gen):
    """The uniforms of one pixel, in [1e-5, 1 - 1e-5] as the original's sampler."""
    return [keras.random.uniform(s, UNIFORM_MIN, 1.0 - UNIFORM_MIN, seed=seed_gen)
            for s in model.distribution.uniform_shapes((n,))]


def naive_continuous(model, num_samples, seed=0, labels=None):
    """Continuous samples in [-1, 1], (N, H, W, C), before rounding: one full forward pass per
    pixel. `labels`: (N,) int32 for a class-conditional model, else None."""
    n = int(num_samples)
    seed_gen = keras.random.SeedGenerator(seed)
    height, width, channels = model.image_shape
    forward = compiled_for(model, "forward", lambda x, labels: model(x, class_label=labels))
    x = ops.zeros((n, height, width, channels))
    for i in range(height):
        for j in range(width):
            pixel = model.distribution.sample(forward(x, labels)[:, i, j],
                                              _draw(model, n, seed_gen))
            x = ops.slice_update(x, (0, i, j, 0), ops.reshape(pixel, (n, 1, 1, channels)))
    return x


def _row_step(model, x_row, prev, held, labels, phase, row):
    """The network on one image row: (params (B, 1, W, P), cache entries of the row, held)."""
    step = RowStep(prev, held, phase, row, model.image_shape[0])
    params = model(x_row, class_label=labels, ctx=step)
    return params, step.current, step.held


def cached_continuous(model, num_samples, seed=0, labels=None):
    """Continuous samples in [-1, 1], (N, H, W, C), before rounding: those of
    `naive_continuous` for the same seed up to float rounding, at about 1/H of the cost."""
    n = int(num_samples)
    if labels is not None:
        labels = ops.convert_to_tensor(labels)
    seed_gen = keras.random.SeedGenerator(seed)
    height, width, channels = model.image_shape
    # The phase (argument 4) selects the program: one trace per value.
    step = compiled_for(model, "row_step", lambda *args: _row_step(model, *args),
                        static_argnums=(4,))
    # Zeros for every cache entry (the original's top padding) and held output, so that row 0
    # runs the same traced function as the rows below; one uncompiled step finds the shapes.
    first = ops.zeros((n, 1, width, channels))
    _, current, held = _row_step(model, first, {}, {}, labels, model.row_phase(0), 0)
    prev = {key: ops.zeros_like(value) for key, value in current.items()}
    held = {level: tuple(ops.zeros_like(v) for v in values) for level, values in held.items()}
    image_rows = []
    for i in range(height):
        phase, row = model.row_phase(i), ops.convert_to_tensor(i, "int32")
        x_row = ops.zeros((n, 1, width, channels))
        for j in range(width):
            params, _, _ = step(x_row, prev, held, labels, phase, row)
            pixel = model.distribution.sample(params[:, 0, j], _draw(model, n, seed_gen))
            x_row = ops.slice_update(x_row, (0, 0, j, 0), ops.reshape(pixel, (n, 1, 1, channels)))
        _, current, held = step(x_row, prev, held, labels, phase, row)  # the finished row
        prev = {**prev, **current}
        image_rows.append(x_row)
    return ops.concatenate(image_rows, axis=1)
