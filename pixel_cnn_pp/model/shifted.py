"""Causal (shifted) convolutions: Keras twins of `nn.down_shifted_conv2d`,
`nn.down_right_shifted_conv2d`, `nn.down_shifted_deconv2d` and `nn.down_right_shifted_deconv2d`.

Padding and cropping are exactly the original's: zero-pad then a VALID weight-normalised
convolution, or a VALID transposed convolution then a crop. The padded zeros also hit the extra
ones channel of the input, which is how the network tells image from padding. The pass context
(`passes.py`) makes the padded input (`ctx.window`): zeros on a full pass, the cached rows and
positions on a sampler step.
"""

from pixel_cnn_pp.model.passes import FULL
from pixel_cnn_pp.model.weight_norm import WNConv2D, WNConv2DTranspose


class ShiftedConv2D(WNConv2D):
    """A VALID convolution of its input zero-padded by `padding()` (the pass's `window`)."""

    def padding(self):
        """(top, left, right) zeros around the input."""
        raise NotImplementedError

    def call(self, x, ctx=FULL):
        return super().call(ctx.window(self, x, *self.padding()), ctx)

    def of_activated(self, x, f, ctx=FULL):
        """self(f(x)) for a nonlinearity f that maps 0 to 0, so that padding and f commute: on a
        sampler step f is applied to the window, and the step's caches hold x (half the
        channels of concat_elu(x): half the bytes each write copies)."""
        if ctx.position is None:  # a whole map: f, then the layer as called anywhere else
            return self(f(x), ctx=ctx)
        if not self.built:  # a step calls no __call__, which would build it
            raise ValueError(f"{self.name}: a sampler step needs a built model")
        return ctx.activated_conv(self, x, f)


class DownShiftedConv2D(ShiftedConv2D):
    """Ports `nn.down_shifted_conv2d`: sees the rows above and the current row's
    horizontal neighbourhood. Pad top fh-1, left and right (fw-1)//2, then VALID.

    x: (B, H, W, C) -> (B, ceil(H/s), ceil(W/s), units). Default filter (2, 3).
    """

    def __init__(self, units, filter_size=(2, 3), strides=(1, 1), **kwargs):
        super().__init__(units, filter_size=filter_size, strides=strides, **kwargs)

    def padding(self):
        fh, fw = self.filter_size
        return fh - 1, (fw - 1) // 2, (fw - 1) // 2


class DownRightShiftedConv2D(ShiftedConv2D):
    """Ports `nn.down_right_shifted_conv2d`: sees the rows above and the pixels to the left.
    Pad top fh-1 and left fw-1, then VALID.

    x: (B, H, W, C) -> (B, ceil(H/s), ceil(W/s), units). Default filter (2, 2).
    """

    def __init__(self, units, filter_size=(2, 2), strides=(1, 1), **kwargs):
        super().__init__(units, filter_size=filter_size, strides=strides, **kwargs)

    def padding(self):
        fh, fw = self.filter_size
        return fh - 1, fw - 1, 0


class DownShiftedConv2DTranspose(WNConv2DTranspose):
    """Ports `nn.down_shifted_deconv2d`: VALID transposed conv, keep rows [0, H*s) and columns
    [(fw-1)//2, (fw-1)//2 + W*s).

    x: (B, H, W, C) -> (B, H*s, W*s, units). Default filter (2, 3), stride 2 in the model.
    As in the original, DDI statistics are taken on the uncropped `deconv2d` output (trailing
    bias-only rows and columns and the cropped leading columns included); only then is it cropped.
    """

    def __init__(self, units, filter_size=(2, 3), strides=(2, 2), **kwargs):
        super().__init__(units, filter_size=filter_size, strides=strides, **kwargs)

    def _crop(self, y, height, width):
        side = (self.filter_size[1] - 1) // 2
        return y[:, :height * self.strides[0], side:side + width * self.strides[1]]

    def call(self, x, ctx=FULL):
        return self._crop(super().call(x, ctx), x.shape[1], x.shape[2])


class DownRightShiftedConv2DTranspose(DownShiftedConv2DTranspose):
    """Ports `nn.down_right_shifted_deconv2d`: VALID transposed conv, keep rows [0, H*s) and
    columns [0, W*s).

    x: (B, H, W, C) -> (B, H*s, W*s, units). Default filter (2, 2), stride 2 in the model.
    """

    def __init__(self, units, filter_size=(2, 2), strides=(2, 2), **kwargs):
        super().__init__(units, filter_size=filter_size, strides=strides, **kwargs)

    def _crop(self, y, height, width):
        return y[:, :height * self.strides[0], :width * self.strides[1]]

