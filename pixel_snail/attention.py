"""Causal attention and positional channels of PixelSNAIL, in `keras.ops` only (no `tf.*`), so
the same code runs on the TensorFlow and JAX backends.

Ports `nn.causal_attention` (neocxi/pixelsnail-public `pixel_cnn_pp/nn.py`) with
`downsample=1` and `use_pos_enc=False`, the only settings of the published `h12_noup_smallkey`
spec; the max-pooled (`downsample > 1`) variant is not ported. Its `nn.get_causal_mask` is
`causal_mask`, kept with the pass contexts, whose `history` says what each query sees.
"""
import itertools
import math

import numpy as np
from keras import ops

from pixel_cnn_pp.model.passes import FULL, causal_mask

MASK_PENALTY = 1e10  # subtracted from the scores of invisible positions
DENOMINATOR_EPSILON = 1e-6  # rows sum to slightly less than 1; the first row is exactly 0


def _flatten(t):
    """(B, H, W, C) -> (B, H*W, C) in raster (row-major) order."""
    return ops.reshape(t, (-1, int(np.prod(t.shape[1:-1])), t.shape[-1]))


def causal_attention_weights(key, query):
    """The attention matrix P of `nn.causal_attention`: (B, N_q, N) for key (B, H, W, d) and
    query (B, H, W, d), N = N_q = H*W.

        S = Q K^T - (1 - mask) * 1e10;  S -= max_j S;  E = exp(S / sqrt(d)) * mask
        P = E / (sum_j E + 1e-6)

    The 1/sqrt(d) comes after the max subtraction and the mask is applied again after exp, so
    the first row (nothing visible) is exactly 0 rather than NaN.
    """
    _check(key, query)
    q, k = _flatten(query), _flatten(key)
    return _weights(q, k, ops.convert_to_tensor(causal_mask(q.shape[1]), dtype=q.dtype))


def _check(key, query):
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"key and query must have the same channels, got {key.shape[-1]} and "
                         f"{query.shape[-1]}")
    if tuple(query.shape[1:-1]) != tuple(key.shape[1:-1]):
        raise ValueError("causal_attention is ported with downsample=1 only: key and query "
                         f"must share the spatial shape, got {key.shape} and {query.shape}")


def _weights(q, k, mask):
    """q (B, N_q, d), k (B, N, d), mask (N_q, N) of 0/1 -> P (B, N_q, N)."""
    scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) - (1.0 - mask) * MASK_PENALTY
    scores = scores - ops.max(scores, axis=-1, keepdims=True)
    exp = ops.exp(scores / np.float32(math.sqrt(k.shape[-1]))) * mask
    return exp / (ops.sum(exp, axis=-1, keepdims=True) + DENOMINATOR_EPSILON)


def causal_attention(key, mixin, query, ctx=FULL, owner=None):
    """Ports `nn.causal_attention(key, mixin, query)` (downsample 1, no positional encoding).

    key: (B, H, W, d), mixin (the values): (B, H, W, d_v), query: (B, H, W, d)
    -> (B, H, W, d_v) = P @ V with P from `causal_attention_weights`. Single head, no output
    projection, no dropout; pixel (0, 0) gets exactly 0.

    `ctx.history` gives the keys and values that the queries see: on the whole map every
    position's, with the causal mask; on a sampler's pixel step (every tensor one position,
    B, 1, 1, .) those of every pixel before (i, j), kept under `owner`, with the mask of the
    positions written so far. The same penalty and normalisation either way.
    """
    _check(key, query)
    keys, values, visible = ctx.history(owner, key, mixin)
    probs = _weights(_flatten(query), keys, visible)
    return ops.reshape(_mix(probs, values), (-1, *query.shape[1:-1], mixin.shape[-1]))


def _mix(probs, values):
    """P @ V: probs (B, N_q, M) and values [(B, M_k, d_v)] that split M -> (B, N_q, d_v), one
    product per table of values (the probabilities sliced only where there are several)."""
    if len(values) == 1:
        return ops.matmul(probs, values[0])
    bounds = list(itertools.accumulate([0] + [part.shape[1] for part in values]))
    terms = [ops.matmul(probs[:, :, a:b], part)
             for a, b, part in zip(bounds, bounds[1:], values)]
    return sum(terms[1:], terms[0])


def positional_background(x, ctx=FULL, copies=None):
    """The `background` tensor of `_base_noup_smallkey_spec`: (B, H, W, C) -> (B, H, W, 2C).

    Channels [0, C) hold (r - H/2)/H for row r and [C, 2C) hold (c - W/2)/W for column c. The
    original broadcasts each coordinate by adding `0. * x`, so it gets one copy per image channel:
    6 channels for RGB (raw_content = F + 9, raw_q = F + 6 wide), 2 for grayscale.
    On a sampler's pixel step x is (B, 1, 1, C), pixel `ctx.position` of `ctx.image`.
    `copies`: copies per coordinate where they are not x's channels (one-hot codes: 1).
    """
    height, width = (x if ctx.position is None else ctx.image).shape[1:3]
    rows = (ops.arange(height, dtype="float32") - height / 2) / height
    cols = (ops.arange(width, dtype="float32") - width / 2) / width
    if ctx.position is not None:
        row, col = (ops.reshape(p, (1,)) for p in ctx.position)
        rows, cols, height, width = ops.take(rows, row), ops.take(cols, col), 1, 1
    # In x's dtype: under mixed_bfloat16 x is bfloat16, and the TensorFlow backend does not
    # promote float32 + bfloat16. Exact for power-of-two sizes up to 256; otherwise rounded
    # like every other bfloat16 activation.
    rows, cols = ops.cast(rows, x.dtype), ops.cast(cols, x.dtype)
    zeros = ops.zeros_like(x if copies is None else x[..., :copies])  # 0. * x, no path to x
    return ops.concatenate([ops.reshape(rows, (1, height, 1, 1)) + zeros,
                            ops.reshape(cols, (1, 1, width, 1)) + zeros], axis=-1)
