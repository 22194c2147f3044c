"""Weight-normalised layers with data-dependent init: Keras twins of `nn.dense`, `nn.conv2d`,
`nn.deconv2d` and `nn.nin` (openai/pixel-cnn `pixel_cnn_pp/nn.py`).

Each layer owns V (direction, N(0, 0.05)), g (gain, 1) and b (bias, 0), named as in the original,
so a TF1 checkpoint `model/conv2d_7/V` maps onto the `V` of one of these layers.

Data-dependent init (DDI) is an explicit pass: call the layer with `ctx=INIT` on a batch. It
measures the per-channel mean m and population variance v of the pre-activation, sets
g <- g * s and b <- (b - m) * s with s = init_scale / sqrt(v + eps), and returns the output
recomputed with the new parameters (openai/pixel-cnn master semantics; with the fresh g=1, b=0
this is exactly the original's update). Under a tf.distribute strategy run it in cross-replica
context, so that every replica gets the same values: in replica context with a different batch
per replica, each copy would be assigned its own values without any error.
"""
import keras
import numpy as np
from keras import ops

from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model.conv import valid_conv
from pixel_cnn_pp.model.passes import FULL

# The original's constants.
V_INIT_STDDEV = 0.05
L2_NORMALIZE_EPSILON = 1e-12  # tf.nn.l2_normalize's guard, used for conv/deconv only
DDI_EPSILON = 1e-10  # master; the 2016 code and PixelSNAIL use 1e-8 for conv/deconv


class _WeightNormBase(keras.layers.Layer):
    """Shared V/g/b bookkeeping and the DDI pass. Subclasses define the kernel layout."""

    # Name of the original TF1 scope family (used by the checkpoint converter).
    tf1_type = None

    def __init__(self, units, init_scale=1.0, ddi_epsilon=DDI_EPSILON, **kwargs):
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ConfigError(f"{type(self).__name__}: units must be positive, got {units}")
        self.units = int(units)
        self.init_scale = float(init_scale)
        self.ddi_epsilon = float(ddi_epsilon)

    def _v_shape(self, in_channels):
        raise NotImplementedError

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel axis of the input must be known")
        self.V = self.add_weight(
            name="V", shape=self._v_shape(int(in_channels)),
            initializer=keras.initializers.RandomNormal(0.0, V_INIT_STDDEV))
        self.g = self.add_weight(name="g", shape=(self.units,), initializer="ones")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")

    def kernel(self):
        """The weights the layer applies, computed from V and g (a sampler computes them once)."""
        raise NotImplementedError

    def _forward(self, x, ctx):
        raise NotImplementedError

    def call(self, x, ctx=FULL):
        y = self._forward(x, ctx)
        if not ctx.init:
            return y
        axes = tuple(range(len(y.shape) - 1))
        mean = ops.mean(y, axis=axes)
        var = ops.var(y, axis=axes)  # population variance, as tf.nn.moments
        scale = self.init_scale / ops.sqrt(var + self.ddi_epsilon)
        self.g.assign(self.g * scale)
        self.b.assign((self.b - mean) * scale)
        return self._forward(x, ctx)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, init_scale=self.init_scale,
                      ddi_epsilon=self.ddi_epsilon)
        return config


class WNDense(_WeightNormBase):
    """Ports `nn.dense`: y = (x @ V) * g / ||V[:, j]|| + b, normalised over axis 0, no epsilon.

    x: (..., C_in) -> (..., units). V: (C_in, units). Applied to (B, H, W, C) it is `nn.nin`.
    """

    tf1_type = "dense"

    def _v_shape(self, in_channels):
        return (in_channels, self.units)

    def kernel(self):
        """(V, g / ||V||): the original multiplies after the matmul, so the scale stays apart."""
        return self.V, self.g / ops.sqrt(ops.sum(ops.square(self.V), axis=0))

    def _forward(self, x, ctx):
        v, scaler = ctx.kernel(self)
        # A 2-D matmul on (N, C_in), as the original's reshape: a broadcasting matmul of
        # (B, H, W, C) by (C, units) differentiates through per-row products summed
        # afterwards, measured 4.5x slower per training step at the paper configuration.
        flat = ops.matmul(ops.reshape(x, (-1, x.shape[-1])), v)
        y = ops.reshape(flat, tuple(-1 if d is None else d for d in x.shape[:-1]) + (self.units,))
        return y * scaler + self.b


class Nin(WNDense):
    """Ports `nn.nin`: a weight-normalised 1x1 projection, (B, H, W, C) -> (B, H, W, units).

    The original reshapes to (B*H*W, C) and calls `nn.dense`; its variables are `dense_k/*`.
    """


def _l2_normalize(v, axes):
    return v * ops.rsqrt(ops.maximum(ops.sum(ops.square(v), axis=axes, keepdims=True),
                                     L2_NORMALIZE_EPSILON))


class WNConv2D(_WeightNormBase):
    """Ports `nn.conv2d` with padding 'VALID' (the only padding the model uses).

    x: (B, H, W, C_in) -> (B, H', W', units). V: (kh, kw, C_in, units), normalised per output
    channel over axes (0, 1, 2) with tf.nn.l2_normalize's 1e-12 guard. Stride 1 runs through
    `conv.valid_conv` (its filter gradient as matrix products on CPUs).
    """

    tf1_type = "conv2d"

    def __init__(self, units, filter_size=(3, 3), strides=(1, 1), **kwargs):
        super().__init__(units, **kwargs)
        self.filter_size = tuple(int(k) for k in filter_size)
        self.strides = tuple(int(s) for s in strides)

    def _v_shape(self, in_channels):
        return (*self.filter_size, in_channels, self.units)

    def kernel(self):
        return self.g * _l2_normalize(self.V, (0, 1, 2))

    def _forward(self, x, ctx):
        kernel = ctx.kernel(self)
        if tuple(x.shape[1:3]) == self.filter_size:
            # One output position (a sampler's pixel step): the same sum as one matmul, which
            # the backends run faster than a convolution of a kernel-sized input.
            flat = ops.reshape(x, (-1, int(np.prod(kernel.shape[:3]))))
            y = ops.matmul(flat, ops.reshape(kernel, (-1, self.units)))
            return ops.reshape(y, (-1, 1, 1, self.units)) + self.b
        if self.strides == (1, 1):
            return valid_conv(x, kernel) + self.b
        return ops.conv(x, kernel, strides=self.strides, padding="valid") + self.b

    def convolve(self, x, ctx=FULL):
        """The VALID convolution of an input that is already padded (no DDI)."""
        return self._forward(x, ctx)

    def get_config(self):
        config = super().get_config()
        config.update(filter_size=self.filter_size, strides=self.strides)
        return config


class WNConv2DTranspose(WNConv2D):
    """Ports `nn.deconv2d` with padding 'VALID'.

    x: (B, H, W, C_in) -> (B, H*s + kh - 1, W*s + kw - 1, units), the output size the original
    asks TF for. Keras's VALID transposed conv gives (H-1)*s + kh rows; the s-1 trailing rows and
    columns it lacks receive no kernel contribution in TF, only the bias, so they are appended as
    zeros before the bias. They matter for DDI's moments and are cropped by the shifted wrappers.
    V: (kh, kw, units, C_in), normalised per output channel over axes (0, 1, 3).
    """

    tf1_type = "deconv2d"

    def _v_shape(self, in_channels):
        return (*self.filter_size, self.units, in_channels)

    def kernel(self):
        return ops.reshape(self.g, (1, 1, -1, 1)) * _l2_normalize(self.V, (0, 1, 3))

    def _forward(self, x, ctx):
        y = ops.conv_transpose(x, ctx.kernel(self), strides=self.strides, padding="valid")
        sh, sw = self.strides
        y = ops.pad(y, [[0, 0], [0, sh - 1], [0, sw - 1], [0, 0]])
        return y + self.b


class ConditionalWeights(keras.layers.Layer):
    """The class-conditioning term of `nn.gated_resnet`: h (B, K) -> h @ hw broadcast to
    (B, 1, 1, units). hw: (K, units), N(0, 0.05), not weight-normalised, no bias, no DDI.
    """

    tf1_type = "conditional_weights"

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)

    def build(self, input_shape):
        self.hw = self.add_weight(
            name="hw", shape=(int(input_shape[-1]), self.units),
            initializer=keras.initializers.RandomNormal(0.0, V_INIT_STDDEV))

    def call(self, h):
        return ops.reshape(ops.matmul(h, self.hw), (-1, 1, 1, self.units))

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config
