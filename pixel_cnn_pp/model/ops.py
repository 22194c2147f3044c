"""Parameter-free ops of the original `pixel_cnn_pp/nn.py`, in `keras.ops`.

Every function takes and returns NHWC tensors unless its docstring says otherwise.
"""
from keras import ops

from pixel_cnn_pp.errors import ConfigError


def concat_elu(x):
    """Ports `nn.concat_elu`: ELU(concat([x, -x])) on the last axis, (..., C) -> (..., 2C)."""
    return ops.elu(ops.concatenate([x, -x], axis=-1))


def log_sum_exp(x, axis=-1):
    """Ports `nn.log_sum_exp`: numerically stable log(sum(exp(x))) over `axis` (reduced)."""
    m = ops.max(x, axis=axis, keepdims=True)
    return ops.squeeze(m, axis=axis) + ops.log(ops.sum(ops.exp(x - m), axis=axis))


def log_prob_from_logits(x, axis=-1):
    """Ports `nn.log_prob_from_logits`: log-softmax over `axis` (kept)."""
    m = ops.max(x, axis=axis, keepdims=True)
    return x - m - ops.log(ops.sum(ops.exp(x - m), axis=axis, keepdims=True))


def down_shift(x):
    """Ports `nn.down_shift`: (B, H, W, C) -> same shape, row r holds input row r - 1."""
    return ops.pad(x, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


def right_shift(x):
    """Ports `nn.right_shift`: (B, H, W, C) -> same shape, column c holds input column c - 1."""
    return ops.pad(x, [[0, 0], [0, 0], [1, 0], [0, 0]])[:, :, :-1]


# Each maps 0 to 0, so padding and it commute: a sampler step applies it to a convolution's
# window of cached inputs (`shifted.py`, `of_activated`).
NONLINEARITIES = {
    "concat_elu": concat_elu,
    "elu": ops.elu,
    "relu": ops.relu,
}


def get_nonlinearity(name):
    """The resnet nonlinearity named as in the original's `--resnet_nonlinearity` flag."""
    if name not in NONLINEARITIES:
        raise ConfigError(
            f"resnet_nonlinearity={name!r} is not one of {sorted(NONLINEARITIES)}")
    return NONLINEARITIES[name]
