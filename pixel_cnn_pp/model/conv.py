"""The stride-1 VALID convolution of the weight-normalised layers, with its filter gradient
optionally written as matrix products (on AVX2 CPUs, TensorFlow's Conv2DBackpropFilter was the
largest single cost of a training step; `bench/conv_filter_grad.py` times the two).

The value and the input gradient are the backend's own (`ops.conv`, `ops.conv_transpose`); only
the filter gradient differs, and only by float32 rounding:

    dK[a, b] = sum over (n, h, w) of x[n, h + a, w + b, :]^T dy[n, h, w, :]

one (C_in, rows) x (rows, C_out) product per kernel offset (a, b), on pixel rows: x and dy
(zero-padded once to x's size) flattened to one row per pixel, offset (a, b) pairs x's rows
from a * W_x + b on with dy's rows from 0 on. Ranges of rows are leading-axis slices, which
TensorFlow can take without a copy; the zero rows of dy cancel the pairs that wrap into the next
row or image. The earlier form, a zero-padded copy of dy per offset, had the same products; a
paper-configuration training step is 3% faster without the copies (time ratios 0.94, 0.98 and
0.97 in three runs of 5 alternating pairs, bench/RESULTS.md).
"""
from keras import ops

from pixel_cnn_pp.errors import ConfigError

# The filter gradient of `valid_conv`, read when a gradient is traced: "backend" (the backend's
# own) or "products" (the sum above). This package does not look at the machine: the CLIs and
# benchmarks set it for theirs (`pixel_cnn_pp.runtime.hardware.choose_filter_gradient`).
DEFAULT_FILTER_GRADIENT = "backend"
FILTER_GRADIENT = DEFAULT_FILTER_GRADIENT
FILTER_GRADIENTS = ("backend", "products")


def filter_gradient():
    """`FILTER_GRADIENT`, checked."""
    if FILTER_GRADIENT not in FILTER_GRADIENTS:
        raise ConfigError(f"conv.FILTER_GRADIENT={FILTER_GRADIENT!r} is not one of "
                          f"{', '.join(FILTER_GRADIENTS)}")
    return FILTER_GRADIENT


def _filter_gradient(x, dy, kernel_shape):
    """dK (kh, kw, C_in, C_out) of x (B, H + kh - 1, W + kw - 1, C_in), dy (B, H, W, C_out).

    Only dy is copied (padded once): slices of a copy of x would depend on x alone, so the
    executor could make them as soon as the forward pass ends and hold them (+4.9 GiB at the
    paper configuration, measured); views of x cost nothing wherever they are made."""
    kh, kw, cin, cout = kernel_shape
    batch = ops.shape(x)[0]  # a tensor where the batch size is known only at run time
    height, width = x.shape[1], x.shape[2]  # H + kh - 1, W + kw - 1
    rows_x = ops.reshape(x, (-1, cin))
    rows_dy = ops.reshape(ops.pad(dy, [[0, 0], [0, kh - 1], [0, kw - 1], [0, 0]]), (-1, cout))
    # Pairs (x row i + a * width + b, dy row i) past this have a zero dy row for every offset.
    rows = batch * height * width - (kh - 1) * width - (kw - 1)
    rows_dy = rows_dy[:rows]
    # x^T dy as matmul of a transpose: TensorFlow folds the transpose into the product
    # (transpose_a); oneDNN's MatMul ran these shapes 5-10% faster than its Einsum.
    dk = [ops.matmul(ops.transpose(rows_x[a * width + b:a * width + b + rows]), rows_dy)
          for a in range(kh) for b in range(kw)]
    return ops.reshape(ops.stack(dk), kernel_shape)


def valid_conv(x, kernel):
    """ops.conv(x, kernel, strides=1, padding="valid"): (B, H + kh - 1, W + kw - 1, C_in) and
    (kh, kw, C_in, C_out) -> (B, H, W, C_out)."""
    if filter_gradient() == "backend":
        return ops.conv(x, kernel, strides=1, padding="valid")
    return _valid_conv(x, kernel)


@ops.custom_gradient
def _valid_conv(x, kernel):
    kernel_shape = tuple(int(d) for d in kernel.shape)

    def grad(*args, upstream=None):
        dy = args[0] if upstream is None else upstream
        dx = ops.conv_transpose(dy, kernel, strides=1, padding="valid")
        return dx, _filter_gradient(x, dy, kernel_shape)

    return ops.conv(x, kernel, strides=1, padding="valid"), grad
