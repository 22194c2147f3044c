"""Pass contexts: how one call of a network is evaluated, given to every layer as `ctx`.

A model writes its wiring once (`call`) and every layer takes `ctx`; the context decides what
a layer's padding, shift or attention history is:

* `FULL`: the whole (B, H, W, C) map, zero padding above the image (training, evaluation);
* `INIT`: the same with data-dependent init (`nn.py`'s `init=True`);
* `RowStep`: one image row of the cached sampler (`sampling.py`): every causal convolution
  reads the rows above its input from the cache instead of zeros, down-sampled levels whose row
  does not change are skipped and their outputs held, attention reads its keys and values so far.

Caches are keyed by the layer that owns them (by object, stored under its unique Keras name so
that the cache is a plain dict of tensors that tf.function and jax.jit can carry).
"""
from keras import layers as keras_layers
from keras import ops


def _key(owner):
    """A cache key: a layer, or (layer, tag) for a second cache of the same layer."""
    if isinstance(owner, tuple):
        layer, tag = owner
        return f"{layer.name}/{tag}"
    if isinstance(owner, keras_layers.Layer):
        return owner.name
    raise TypeError(f"cache owners are layers or (layer, tag) pairs, got {owner!r}")


class Pass:
    """The whole map: `pad_top` zero-pads, every level is computed, nothing is held."""

    row = None  # the image row of a row step; None: the whole map

    def __init__(self, init=False):
        self.init = bool(init)

    def pad_top(self, owner, x, n):
        """x (B, H, W, C) with n rows above it: zeros, the original's padding."""
        return ops.pad(x, [[0, 0], [n, 0], [0, 0], [0, 0]]) if n else x

    def active(self, level):
        """Whether the map at down-sampling `level` (0 full, 1 half, ...) is computed."""
        return True

    def skip(self, owner, x):
        """Called instead of `owner(x)` for a layer whose output level is not active."""
        raise AssertionError("a full pass computes every level")

    def hold(self, level, outputs):
        """The outputs of `level`'s last layer: these, or those held from an earlier row."""
        return outputs

    def upsampled(self, y, level):
        """The rows of an up-sampled map (B, 2h, W, C) that belong to this pass at `level`."""
        return y

    def history(self, owner, x):
        """The whole map of x so far, for attention: x itself on a full pass."""
        return x


FULL = Pass()
INIT = Pass(init=True)


class RowStep(Pass):
    """One image row `row` of the cached sampler, at `phase` (the model's `row_phase(row)`, a
    Python int: one trace per phase); `row` itself may be a tensor.

    `prev` {key: tensor}: per causal convolution the last n final rows of its input
    (B, n, W, C); per attention input the whole map so far (B, H, W, C). `held` {level: outputs}
    of the down-sampled levels. After the call, `current` holds this row's cache entries and
    `held` the updated outputs.
    """

    def __init__(self, prev, held, phase, row, height):
        super().__init__(init=False)
        self.prev = prev
        self.held = dict(held)
        self.phase = phase
        self.row = row
        self.height = height
        self.current = {}

    def pad_top(self, owner, x, n):
        """x (B, 1, W, C) with its n cached rows on top, (B, n + 1, W, C)."""
        if n == 0:
            return x
        key = _key(owner)
        top = self.prev.get(key)
        if top is None:  # only while the sampler discovers the cache's shapes
            top = ops.zeros((ops.shape(x)[0], n) + tuple(x.shape[2:]), x.dtype)
        rows = ops.concatenate([top, x], axis=1)
        self.current[key] = rows[:, -n:]
        return rows

    def active(self, level):
        # Level L's row changes only on image rows that are multiples of 2**L.
        return self.phase % (2 ** level) == 0

    def skip(self, owner, x):
        # Not computed on this row, but its next computation needs this input row above it.
        self.pad_top(owner, x, 1)

    def hold(self, level, outputs):
        if self.active(level):
            self.held[level] = outputs
            return outputs
        return self.held[level]

    def upsampled(self, y, level):
        half = (self.phase >> level) & 1  # (row >> level) % 2
        return y[:, half:half + 1]

    def history(self, owner, x):
        """The (B, H, W, C) map with row `row` set to x (B, 1, W, C); the rows below hold stale
        values or zeros, which causal consumers mask out."""
        key = _key(owner)
        old = self.prev.get(key)
        if old is None:
            old = ops.zeros((ops.shape(x)[0], self.height) + tuple(x.shape[2:]), x.dtype)
        here = ops.reshape(ops.one_hot(self.row, self.height, dtype=x.dtype),
                           (1, self.height, 1, 1))
        full = old * (1.0 - here) + x * here  # exact: the other rows are multiplied by 1
        self.current[key] = full
        return full
