"""Spatial conditioning: a condition map (B, Hc, Wc, D) resized to each resolution level of a
network, for the projections into its gated resnets (VQ-VAE-2's bottom prior sees the top code
map at every layer; the original's class vector `h` enters every gated resnet the same way).
"""
from keras import ops

from pixel_cnn_pp.errors import ConfigError


def factor(source, target, what):
    """(up, down): the integer factors that take a size `source` to `target`; refuses others."""
    if target >= source and target % source == 0:
        return target // source, 1
    if source > target and source % target == 0:
        return 1, source // target
    raise ConfigError(f"{what}: a condition of size {source} cannot be resized to {target} by "
                      "an integer factor (nearest-neighbour up- or down-sampling only)")


def check_sizes(condition_shape, sizes):
    """Refuse a condition (Hc, Wc, ...) that some level (h, w) in `sizes` cannot be resized to."""
    for height, width in sizes:
        factor(condition_shape[0], height, "condition height")
        factor(condition_shape[1], width, "condition width")


def resize(condition, height, width):
    """Nearest-neighbour resize of (B, Hc, Wc, D) to (B, height, width, D) by integer factors:
    each entry repeated (up) or every k-th kept, the top-left of each k x k cell (down)."""
    for axis, size in ((1, height), (2, width)):
        up, down = factor(condition.shape[axis], size, "condition")
        if up > 1:
            condition = ops.repeat(condition, up, axis=axis)
        if down > 1:
            condition = condition[:, ::down] if axis == 1 else condition[:, :, ::down]
    return condition
