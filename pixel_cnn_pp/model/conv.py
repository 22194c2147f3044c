"""The stride-1 VALID convolution of the weight-normalised layers, with its filter gradient
written as matrix products (#15: on AVX2 CPUs, TensorFlow's Conv2DBackpropFilter was the
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
import functools

import keras
from keras import ops

# "products": the sum above; "backend": the backend's own gradient; "auto": products when the
# backend sees no GPU or TPU and the CPU has AVX2 but not AVX-512. Read at trace time. Measured
# (bench/RESULTS.md): on a 2-core AVX2 CPU the products made a step 1.1x faster; on a 2-core
# AVX-512 CPU oneDNN's Conv2DBackpropFilter runs at the forward convolution's speed and the
# products do not beat it; on an H100 they ran at 0.85x cuDNN's speed.
FILTER_GRADIENT = "auto"
_CHOICES = ("auto", "products", "backend")


def products_on_this_machine():
    """Whether `valid_conv` uses the matrix-product filter gradient here."""
    if FILTER_GRADIENT not in _CHOICES:
        raise ValueError(f"conv.FILTER_GRADIENT={FILTER_GRADIENT!r} is not one of {_CHOICES}")
    if FILTER_GRADIENT != "auto":
        return FILTER_GRADIENT == "products"
    return _cpus_only() and avx2_without_avx512()


def avx2_without_avx512(cpuinfo="/proc/cpuinfo"):
    """Whether the CPU's flags (Linux's `cpuinfo`) name avx2 and not avx512f; False where they
    cannot be read (other systems, other architectures: the backend's gradient is kept)."""
    flags = cpu_flags(cpuinfo)
    return "avx2" in flags and "avx512f" not in flags


@functools.cache
def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The first CPU's feature flags from Linux's `cpuinfo`, as a frozenset; empty where they
    cannot be read (other systems; arm64's line is named "Features")."""
    try:
        with open(cpuinfo) as f:
            return frozenset(next((line.split(":", 1)[1].split() for line in f
                                   if line.startswith("flags")), []))
    except OSError:
        return frozenset()


@functools.cache
def _cpus_only():
    # Once per process: the devices a backend sees do not change after it starts.
    return all(d.split(":")[0].lower() == "cpu" for d in keras.distribution.list_devices())


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
