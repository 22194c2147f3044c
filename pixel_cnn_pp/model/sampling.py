"""Samplers of every model, in `keras.ops`: the original's naive sampler and the cached one.
Each is one program: a `fori_loop` over rows and pixels with the draws, the network and the
write-back inside, compiled once (`tf.function` on TensorFlow, `jax.jit` on JAX) and the same
code that the export's `sample` signature runs.

Naive (`sample_from_model` of the original `train.py`): one full forward pass per pixel in
raster order, the continuous sample fed back.

Cached, after Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive
Models": the network runs under the step contexts of `steps.py`. A model with a vertical stack
(PixelCNN++'s u stream, which sees only the rows above) computes it once per image row
(`RowStep`); everything else runs once per pixel (`PixelStep`), each layer computing its one
output at (i, j) from buffers of the input rows it needs, the half- and quarter-resolution
levels only on the pixels where their input changes, attention with one query against the keys
and values so far. A whole image costs about one forward pass.

Both draw from `pixel_uniforms`: counter-based (a hash of seed, image, pixel, draw and element),
so the draws are the same in every sampler, backend and process, and image k of a batch does
not depend on the batch size. The cached network rounds differently from the full one (about
1e-6), so a value that close to a level boundary can round to the neighbouring uint8 level.
"""
import weakref

import keras
import numpy as np
from keras import ops, tree

from pixel_cnn_pp.model.mixture import UNIFORM_MIN
from pixel_cnn_pp.model.shifted import ShiftedConv2D
from pixel_cnn_pp.model.steps import (PixelStep, RowStep, bottom_key, bottom_row,
                                      splits_by_row)
from pixel_cnn_pp.model.weight_norm import _WeightNormBase

_CACHE = weakref.WeakKeyDictionary()  # model -> {name: compiled function}


def compiled_for(model, name, fn, static_argnums=()):
    """`fn` (which runs `model`) compiled once per model and input signature: tf.function on
    TensorFlow; on JAX, jax.jit with the model's variables passed in through a
    `keras.StatelessScope`, so new weights (e.g. the EMA ones) are seen without a new trace.
    `static_argnums`: Python ints that set shapes: static under jax.jit (one program per
    value); TensorFlow gets them as int32 tensors, so one graph serves every batch size and it
    is the graph the export saves (same shapes known, same kernels, the same images). Other
    backends run `fn` op by op. The only backend-specific code of the samplers."""
    functions = _CACHE.setdefault(model, {})
    if name not in functions:
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf  # only on the TensorFlow backend
            graph = tf.function(fn, autograph=False)  # keras.ops loops only
            functions[name] = lambda *args: graph(*[
                tf.constant(a, tf.int32) if i in static_argnums else a
                for i, a in enumerate(args)])
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


# --- draws ----------------------------------------------------------------------------------

def _u32(value):
    return ops.cast(value, "uint32")


def _hash(v):
    """A 32-bit integer hash (PCG's output permutation): uint32 -> uint32, elementwise."""
    state = v * _u32(747796405) + _u32(2891336453)
    word = ops.bitwise_xor(ops.right_shift(state, ops.right_shift(state, _u32(28)) + _u32(4)),
                           state) * _u32(277803737)
    return ops.bitwise_xor(ops.right_shift(word, _u32(22)), word)


def pixel_uniforms(model, num_samples, seed, pixel):
    """The draws of raster pixel `pixel` for `num_samples` images: one tensor per shape of
    `model.distribution.uniform_shapes`, uniform in [1e-5, 1 - 1e-5] as the original's sampler.
    Element e of image b of draw d is a hash of (seed, pixel, d, b, e): no state, so every
    sampler and the export draw the same numbers. seed, pixel: ints or scalar tensors."""
    key = _hash(ops.bitwise_xor(_hash(_u32(seed)), _u32(pixel)))
    draws = []
    for d, shape in enumerate(model.distribution.uniform_shapes(())):
        size = int(np.prod(shape))
        index = _u32(ops.arange(num_samples * size, dtype="int32"))
        bits = _hash(ops.bitwise_xor(_hash(key + _u32(d)), _hash(index)))
        unit = ops.cast(ops.right_shift(bits, _u32(8)), "float32") * (1.0 / 2 ** 24)  # [0, 1)
        draws.append(ops.reshape(UNIFORM_MIN + unit * (1.0 - 2 * UNIFORM_MIN), (-1, *shape)))
    return draws


def _put(image, pixel, value):
    """image (N, H, W, C) with raster pixel `pixel` set to value (N, C); exact (a 0/1 mask)."""
    _, height, width, channels = image.shape
    mask = ops.reshape(ops.one_hot(pixel, height * width, dtype=image.dtype), (1, height, width, 1))
    return image * (1.0 - mask) + ops.reshape(ops.cast(value, image.dtype), (-1, 1, 1, channels)) * mask


def _seed(seed):
    """A Python int seed as uint32 (its low 32 bits, as a cast of an int64 tensor gives)."""
    return _u32(int(seed) & 0xFFFFFFFF) if isinstance(seed, (int, np.integer)) else _u32(seed)


# --- the two samplers, as plain functions of keras.ops (any batch size, any backend) --------

def _writer(model, num_samples, seed, rounded=False, given=None, known=None, temperature=None):
    """on_pixel(k, params (N, P), image) -> image with raster pixel k drawn from its parameters
    with `pixel_uniforms` and written back: continuous as the original, or moved to its level
    with `rounded` (`distribution.quantize`); where `known` (N, H, W) is true, the pixel of
    `given` (N, H, W, C) instead. temperature: a categorical output's (None: the model's)."""
    height, width, channels = model.x_shape
    draw = {} if temperature is None else {"temperature": temperature}
    if given is not None:
        given = ops.reshape(given, (-1, height * width, channels))
        known = ops.reshape(known, (-1, height * width))

    def write(k, params, image):
        value = model.distribution.sample(ops.cast(params, "float32"),  # as the loss: float32
                                          pixel_uniforms(model, num_samples, seed, k), **draw)
        if rounded:
            value = model.distribution.quantize(value)
        if given is not None:
            at = ops.reshape(k, (1,))
            value = ops.where(ops.take(known, at, axis=1), ops.take(given, at, axis=1)[:, 0], value)
        return _put(image, k, value)

    return write


def naive(model, num_samples, seed, labels=None, rounded=False, condition=None,
          temperature=None):
    """Continuous samples (N, `x_shape`) (images in [-1, 1]): one full forward pass per pixel."""
    height, width, channels = model.x_shape
    write = _writer(model, num_samples, _seed(seed), rounded, temperature=temperature)

    def pixel(k, image):
        params = model(image, class_label=labels, training=False, condition=condition)
        flat = ops.reshape(params, (-1, height * width, params.shape[-1]))
        return write(k, ops.take(flat, ops.reshape(k, (1,)), axis=1)[:, 0], image)

    return ops.fori_loop(0, height * width, pixel,
                         ops.zeros((num_samples, height, width, channels)))


def kernels(model):
    """{layer name: kernel} of every weight-normalised layer in its compute dtype, and the
    bottom rows of the pixel steps' split convolutions (`PixelStep.activated_conv`), computed
    once per sampling call (a loop would otherwise normalise, cast and slice every weight at
    every pixel)."""
    weights = {}
    for layer in model.creation_order():
        if isinstance(layer, _WeightNormBase):
            weights[layer.name] = tree.map_structure(
                lambda t, dtype=layer.compute_dtype: ops.cast(t, dtype), layer.kernel())
        if isinstance(layer, ShiftedConv2D) and splits_by_row(layer):
            weights[bottom_key(layer)] = bottom_row(weights[layer.name])
    return weights


def _steps(model):
    return ([RowStep] if getattr(model, "vertical_stack", False) else []) + [PixelStep]


def _inputs(model, kind, num_samples):
    """The x a step's call takes (unused values: the steps read the image from the context)."""
    width, channels = model.x_shape[1:]
    return ops.zeros((num_samples, 1, width if kind is RowStep else 1, channels))


def _discover(model, image, labels, weights, condition=None):
    """The sampler's initial state {key: zeros} and each step kind's layout, from one step of
    each kind with everything computed; its values are discarded (XLA and TF's function
    pruning drop the unused ops)."""
    zero = ops.convert_to_tensor(0, "int32")
    state, layouts = {}, {}
    for kind in _steps(model):
        ctx = kind(state, image, zero, zero, None, weights)
        model(_inputs(model, kind, ops.shape(image)[0]), class_label=labels, ctx=ctx,
              condition=condition)
        state, layouts[kind] = ctx.state(), ctx.layout_of()
    return {key: ops.zeros_like(value) for key, value in state.items()}, layouts


# Pixel steps a loop iteration runs, at least (a level's period if longer). An iteration passes
# every cache through the loop's control ops and each step branches on its column; steps of a
# known column phase branch while tracing instead, for a program n times the size (longer
# first call). bench/RESULTS.md.
UNROLL = 8


def unrolled(layout, width):
    """Pixel steps per loop iteration: the period of the levels' columns (2 ** the deepest
    level), so that every iteration's k-th step runs the same levels, known while tracing, or
    `UNROLL` if larger; fewer where they do not divide the width."""
    period = 2 ** max(layout["levels"].values(), default=0)
    for n in (max(period, UNROLL), period):
        if width % n == 0:
            return n
    return 1


def state_bytes(model, num_samples, labels=None, condition=None):
    """Bytes of the cached sampler's state (caches and held outputs) for `num_samples` images."""
    image = ops.zeros((num_samples,) + model.x_shape)
    state, _ = _discover(model, image, labels, kernels(model), condition)
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in state.values())


def _steps_over_pixels(model, image, labels, on_pixel, carry, condition=None):
    """Run the cached network over every pixel in raster order, as one loop: a `RowStep` per
    image row (models with a vertical stack), then a `PixelStep` per pixel, after which
    `on_pixel(k, params (N, P), image, carry)` returns the next (image, carry). The condition's
    projections are made once, while discovering, and read by the steps. The pixel loop runs
    `unrolled` steps an iteration."""
    height, width, _ = model.image_shape
    num_samples = ops.shape(image)[0]
    weights = kernels(model)
    zero = ops.convert_to_tensor(0, "int32")

    state, layouts = _discover(model, image, labels, weights, condition)
    n = unrolled(layouts[PixelStep], width)

    def run(kind, row, col, image, state, phase=(0, 1), later=None):
        ctx = kind(state, image, row, col, layouts[kind], weights, phase, later)
        out = model(_inputs(model, kind, num_samples), class_label=labels, ctx=ctx,
                    condition=condition)
        return out, ctx.state()

    def image_row(i, loop):
        image, state, carry = loop
        if RowStep in layouts:
            _, state = run(RowStep, i, zero, image, state)

        def pixels(g, loop):  # columns g * n ... g * n + n - 1, the loop unrolled n times
            image, state, carry = loop
            later = {}
            for k in range(n):
                j = g * n + k
                params, state = run(PixelStep, i, j, image, state, (k, n), later)
                image, carry = on_pixel(i * width + j, params[:, 0, 0], image, carry)
            return image, state, carry

        return ops.fori_loop(0, width // n, pixels, (image, state, carry))

    image, _, carry = ops.fori_loop(0, height, image_row, (image, state, carry))
    return image, carry


def cached(model, num_samples, seed, labels=None, rounded=False, condition=None,
           temperature=None):
    """Continuous samples (N, `x_shape`): those of `naive` for the same seed, up to float
    rounding, at about the cost of one forward pass."""
    write = _writer(model, num_samples, _seed(seed), rounded, temperature=temperature)
    image = ops.zeros((num_samples,) + model.x_shape)
    return _steps_over_pixels(model, image, labels, lambda k, p, x, c: (write(k, p, x), c), (),
                              condition)[0]


def completion(model, x, known, seed, labels=None, condition=None):
    """x (N, `x_shape`) completed where `known` (N, H, W) is false: the cached sampler with
    each pixel kept from x where known, else drawn and fed back at its level (`rounded`), so
    that completing a prefix of a `rounded` sample with its seed returns that sample."""
    num_samples = ops.shape(x)[0]
    write = _writer(model, num_samples, _seed(seed), True, x, known)
    image = ops.zeros_like(x)  # pixels enter as the loop reaches them, as in `cached`
    return _steps_over_pixels(model, image, labels, lambda k, p, y, c: (write(k, p, y), c), (),
                              condition)[0]


def teacher_forced(model, x, labels=None, condition=None):
    """The cached network's parameters at every pixel of given images x (N, H, W, C), one step
    at a time: (N, H, W, P), the full forward pass's `model(x)` up to float rounding."""
    height, width, _ = model.image_shape

    def keep(k, params, image, table):
        return image, _put(table, k, ops.cast(params, "float32"))

    table = ops.zeros((ops.shape(x)[0], height, width, model.distribution.num_params))
    return _steps_over_pixels(model, x, labels, keep, table, condition)[1]


METHODS = {"cached": cached, "naive": naive}


def continuous(model, num_samples, seed=0, labels=None, method="cached", rounded=False,
               condition=None, temperature=None):
    """`method`'s samples (N, `x_shape`), from its compiled program (one per model, method,
    `rounded`, temperature or not, and batch size); labels: (N,) int32 or None; condition:
    (N, ...) or None; temperature: a float (a categorical output) or None."""
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {sorted(METHODS)}")
    rounded, tempered = bool(rounded), temperature is not None
    name = method + ("-rounded" if rounded else "") + ("-tempered" if tempered else "")
    fn = compiled_for(model, name, lambda n, seed, labels, condition, temperature: METHODS[
        method](model, n, seed, labels, rounded, condition, temperature if tempered else None),
        static_argnums=(0,))
    return fn(int(num_samples), _seed(seed), _tensor(labels, "int32"), _tensor(condition),
              _tensor(temperature, "float32"))


def _tensor(value, dtype=None):
    return None if value is None else ops.convert_to_tensor(value, dtype)


def complete(model, x, known, seed=0, labels=None, condition=None):
    """`completion` from its compiled program (one per model and batch size): x (N, `x_shape`)
    float32, known (N, H, W) bool, labels (N,) int32 or None, condition (N, ...) or None."""
    fn = compiled_for(model, "complete", lambda x, known, seed, labels, condition: completion(
        model, x, known, seed, labels, condition))
    return fn(x, ops.convert_to_tensor(known, "bool"), _seed(seed), _tensor(labels, "int32"),
              _tensor(condition))
