"""The stride-1 VALID convolution of the weight-normalised layers, with its filter gradient
written as matrix products (#15: on CPUs, TensorFlow's Conv2DBackpropFilter was the largest
single cost of a training step; `bench/conv_filter_grad.py` times the two).

The value and the input gradient are the backend's own (`ops.conv`, `ops.conv_transpose`); only
the filter gradient differs, and only by float32 rounding:

    dK[a, b] = sum over (n, h, w) of x[n, h + a, w + b, :]^T dy[n, h, w, :]

one (C_in, N*H'*W') x (N*H'*W', C_out) product per kernel offset (a, b) (H', W': the input's
size). One product of all offsets at once (dy's copies concatenated) was as fast and held 0.2
GiB more at the paper configuration.
"""
import functools

import keras
from keras import ops

# "products": the sum above; "backend": the backend's own gradient (cuDNN's on a GPU is the
# better one); "auto": products when the backend sees no GPU or TPU. Read at trace time.
FILTER_GRADIENT = "auto"
_CHOICES = ("auto", "products", "backend")


def products_on_this_machine():
    """Whether `valid_conv` uses the matrix-product filter gradient here."""
    if FILTER_GRADIENT not in _CHOICES:
        raise ValueError(f"conv.FILTER_GRADIENT={FILTER_GRADIENT!r} is not one of {_CHOICES}")
    if FILTER_GRADIENT != "auto":
        return FILTER_GRADIENT == "products"
    return _cpus_only()


@functools.cache
def _cpus_only():
    # Once per process: the devices a backend sees do not change after it starts.
    return all(d.split(":")[0].lower() == "cpu" for d in keras.distribution.list_devices())


def _filter_gradient(x, dy, kernel_shape):
    """dK (kh, kw, C_in, C_out) of x (B, H + kh - 1, W + kw - 1, C_in), dy (B, H, W, C_out).

    dy is shifted, not x: dy zero-padded to x's size at offset (a, b) makes dK[a, b] a product
    of x as it is with that copy. Slices of x would depend on x alone, so the executor could
    make them for every layer as soon as the forward pass ends (+4.9 GiB at the paper
    configuration, measured); copies of dy are made only when dy exists."""
    kh, kw, cin, cout = kernel_shape
    flat_x = ops.reshape(x, (-1, cin))
    dk = [ops.einsum("nc,nd->cd", flat_x, ops.reshape(
              ops.pad(dy, [[0, 0], [a, kh - 1 - a], [b, kw - 1 - b], [0, 0]]), (-1, cout)))
          for a in range(kh) for b in range(kw)]
    return ops.reshape(ops.stack(dk), kernel_shape)


def valid_conv(x, kernel):
    """ops.conv(x, kernel, strides=1, padding="valid"): (B, H + kh - 1, W + kw - 1, C_in) and
    (kh, kw, C_in, C_out) -> (B, H, W, C_out)."""
    if not products_on_this_machine():
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
