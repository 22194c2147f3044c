"""Pass contexts: how one call of a network is evaluated, given to every layer as `ctx`.

A model writes its wiring once (`call`) and every layer takes `ctx`; the context decides what
a layer's padding, shift, resolution level or attention history is:

* `FULL`: the whole (B, H, W, C) map, zero padding above and beside it (training, evaluation);
* `INIT`: the same with data-dependent init (`nn.py`'s `init=True`);
* the cached sampler's `RowStep` and `PixelStep` (`steps.py`): one image row of the vertical
  stack, or one pixel of everything else, computed from caches of what came before.

`Pass` below is also the list of what a context answers; the step contexts override it.
"""
import functools

import numpy as np
from keras import ops

from pixel_cnn_pp.model.conditioning import resize
from pixel_cnn_pp.model.ops import down_shift, right_shift


def with_ones(x):
    """The original's x_pad: x (..., C) and a channel of ones, (..., C + 1); the zeros that
    padding adds to it tell the network image from border."""
    return ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)


class Pass:
    """The whole map: zero padding, every level computed, nothing cached."""

    position = None  # (row, col) of a sampler step; None: the whole map

    def __init__(self, init=False):
        self.init = bool(init)

    def window(self, layer, x, top, left, right):
        """The input of a VALID causal convolution: x (B, H, W, C) zero-padded."""
        return ops.pad(x, [[0, 0], [top, 0], [left, right], [0, 0]])

    def kernel(self, layer):
        """The weights a weight-normalised layer applies (`layer.kernel()`)."""
        return layer.kernel()

    def shifted_input(self, layer, x, shift):
        """`down_shift(layer(x_pad))` or `right_shift(layer(x_pad))`: the first layers."""
        y = layer(with_ones(x), ctx=self)
        return down_shift(y) if shift == "down" else right_shift(y)

    def level(self, level, fn, x, owner):
        """fn(x): the computation at down-sampling `level` (1 half, 2 quarter) from x, the
        output of the level above, which `owner` (a strided convolution) consumes."""
        return fn(x)

    def upsampled(self, y, level):
        """The part of an up-sampled map that belongs to this pass at `level`."""
        return y

    def at(self, value, level):
        """A vertical-stack map at `level`, where this pass reads it."""
        return value

    def vertical(self, fn):
        """The vertical stack's values (fn(): {layer name: its output}); None where a pass
        computes only those."""
        return fn()

    def condition_maps(self, model, condition, sizes):
        """The condition (`model.condition_input`'s (B, Hc, Wc, D)) resized to each level's
        (h, w) in `sizes`, or None without a condition."""
        if condition is None:
            return None
        s = model.condition_input(condition)
        return [resize(s, h, w) for h, w in sizes]

    def conditioned(self, layer, s):
        """layer(s): a gated resnet's projection of the condition map at its level."""
        return layer(s, ctx=self)

    def key_inputs(self, owner, *tensors):
        """The inputs of the attention keys and values (x, ul, background), as given."""
        return tensors

    def history(self, owner, key, mixin):
        """What the queries of `owner`'s attention attend to: key (B, H, W, d) and mixin (the
        values, B, H, W, d_v) -> keys (B, M, d), values [(B, M_k, d_v)] that split M, and the
        mask (N_q, M), 1 where a query sees a key. Here every position in raster order
        (M = N_q = H * W), each query seeing those before it (`causal_mask`)."""
        n = int(np.prod(key.shape[1:-1]))
        keys, values = (ops.reshape(t, (-1, n, t.shape[-1])) for t in (key, mixin))
        return keys, [values], ops.convert_to_tensor(causal_mask(n), dtype=key.dtype)


FULL = Pass()
INIT = Pass(init=True)


@functools.lru_cache(maxsize=32)
def causal_mask(n):
    """Ports PixelSNAIL's `nn.get_causal_mask(n, rate=1)` (neocxi/pixelsnail-public
    `pixel_cnn_pp/nn.py`): (n, n) float32, mask[i, j] = 1 iff j < i.

    Strictly lower-triangular: a pixel never attends to itself, which is what makes it safe that
    the keys and values see the raw current pixel x. Cached and read-only, as the original caches
    it with `lru_cache`.
    """
    mask = np.tril(np.ones((n, n), np.float32), k=-1)
    mask.setflags(write=False)
    return mask
