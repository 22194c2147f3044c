"""Cached ("fast") sampling after Ramachandran et al. 2017, "Fast Generation for Convolutional
Autoregressive Models", at row granularity.

Naive sampling runs the whole network once per pixel. Here, for pixel (i, j), every layer is
evaluated on one row only (row i at full resolution, i//2 and i//4 below), and each causal
convolution takes the rows above its input from a cache of values that are already final.
The half- and quarter-resolution stages change only on rows i = 0 mod 2 and 0 mod 4; on the
other rows their outputs are reused. Each step therefore costs about 1/H of a forward pass.
After a row's last pixel, the row is evaluated once more with that pixel so that the cache
holds its final values.

The random draws are those of the naive `AutoregressiveModel.sample` (same seed generator,
same order), so both give the same samples for a seed. The row-sized convolutions round
differently from the full-size ones (about 1e-6), so a value that lies that close to a level
boundary can round to the neighbouring uint8 level; the tests bound this.
A model supports it with `row_phase(i)` and `call_row(x_row, rows, held, class_label)` ->
(params (B, 1, W, P), held); PixelCNN++ and PixelSNAIL do.
"""
import weakref

import keras
from keras import ops

from pixel_cnn_pp.mixture import UNIFORM_MIN


class RowCache:
    """What a row step reads from the rows above and writes for the rows below.

    `prev` {name: tensor}: per causal convolution (by layer name) the last n final rows of its
    input, (B, n, W, C), missing at the top of the image where the original pads with zeros;
    per attention input the whole map so far, (B, H, W, C). `current` collects this row's.
    `phase` is the model's `row_phase(i)` of the image row i (a Python int: one trace per
    phase); `row` is i itself (a tensor, so no trace per row).
    """

    def __init__(self, prev, phase, row, height):
        self.prev = prev
        self.phase = phase
        self.row = row
        self.height = height
        self.current = {}

    def above(self, name, x, n):
        """x (B, 1, W, C) with its n cached rows on top: (B, n + 1, W, C)."""
        if n == 0:
            return x
        top = self.prev.get(name)
        if top is None:
            top = ops.zeros((ops.shape(x)[0], n) + tuple(x.shape[2:]), x.dtype)
        rows = ops.concatenate([top, x], axis=1)
        self.current[name] = rows[:, -n:]
        return rows

    def history(self, name, x):
        """The (B, H, W, C) map with row `row` set to x (B, 1, W, C); the rows below
        hold stale values or zeros, which causal consumers mask out."""
        old = self.prev.get(name)
        if old is None:
            old = ops.zeros((ops.shape(x)[0], self.height) + tuple(x.shape[2:]), x.dtype)
        here = ops.reshape(ops.one_hot(self.row, self.height, dtype=x.dtype),
                           (1, self.height, 1, 1))
        full = old * (1.0 - here) + x * here  # exact: the other rows are multiplied by 1
        self.current[name] = full
        return full


def _step(model, x_row, prev, held, labels, phase, row):
    rows = RowCache(prev, phase, row, model.image_shape[0])
    params, held = model.call_row(x_row, rows, held, class_label=labels)
    return params, rows.current, held


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
            import tensorflow as tf
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


def _compiled(model):
    """The row step; the phase (argument 4) is traced once per value."""
    return compiled_for(model, "row_step", lambda x_row, prev, held, labels, phase, row:
                        _step(model, x_row, prev, held, labels, phase, row), static_argnums=(4,))


def sample_continuous(model, num_samples, seed=0, class_label=None):
    """Continuous samples in [-1, 1], (N, H, W, C), before rounding to uint8 levels: those of
    `model.sample_naive_continuous` for the same seed up to float rounding."""
    n = int(num_samples)
    labels = model._check_labels(class_label, n)
    if labels is not None:
        labels = ops.convert_to_tensor(labels)
    seed_gen = keras.random.SeedGenerator(seed)
    height, width, channels = model.image_shape
    step = _compiled(model)
    # Zeros for every cache entry (the original's top padding) and held output, so that row 0
    # runs the same traced function as the rows below; one uncompiled step finds the shapes.
    first = ops.zeros((n, 1, width, channels))
    _, current, held = _step(model, first, {}, {}, labels, model.row_phase(0), 0)
    prev = {name: ops.zeros_like(value) for name, value in current.items()}
    held = {level: tuple(ops.zeros_like(v) for v in values) for level, values in held.items()}
    image_rows = []
    for i in range(height):
        phase, row = model.row_phase(i), ops.convert_to_tensor(i, "int32")
        x_row = ops.zeros((n, 1, width, channels))
        for j in range(width):
            params, _, _ = step(x_row, prev, held, labels, phase, row)
            uniforms = [keras.random.uniform(s, UNIFORM_MIN, 1.0 - UNIFORM_MIN, seed=seed_gen)
                        for s in model.distribution.uniform_shapes((n,))]
            pixel = model.distribution.sample(params[:, 0, j], uniforms)
            x_row = ops.slice_update(x_row, (0, 0, j, 0), ops.reshape(pixel, (n, 1, 1, channels)))
        _, current, held = step(x_row, prev, held, labels, phase, row)  # the finished row
        prev = {**prev, **current}
        image_rows.append(x_row)
    return ops.concatenate(image_rows, axis=1)
