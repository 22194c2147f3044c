"""The gated residual block: Keras twin of `nn.gated_resnet`."""
import keras
from keras import ops

from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model.ops import get_nonlinearity
from pixel_cnn_pp.model.passes import FULL
from pixel_cnn_pp.model.shifted import DownRightShiftedConv2D, DownShiftedConv2D
from pixel_cnn_pp.model.weight_norm import ConditionalWeights, Nin

# The `conv` argument of the original, by name (PixelSNAIL also passes `nn.nin`).
CONVS = {
    "down_shifted": DownShiftedConv2D,
    "down_right_shifted": DownRightShiftedConv2D,
    "nin": Nin,
}


class GatedResnet(keras.layers.Layer):
    """Ports `nn.gated_resnet(x, a, h, nonlinearity, conv, dropout_p)`.

        c1 = conv(f(x), C) [+ nin(f(a), C)]
        c2 = conv(dropout(f(c1)), 2C, init_scale=0.1) [+ h @ hw] [+ nin(s, 2C, init_scale=0.1)]
        out = x + c2[..., :C] * sigmoid(c2[..., C:])

    x: (B, H, W, C) -> (B, H, W, C); a: (B, H, W, C_a) if `aux` (or a list of maps, concatenated
    here: under remat the concatenation is recomputed rather than kept); h: (B, K) if
    `num_classes`;
    s: (B, H, W, D), a condition map at this block's resolution, if `condition_channels` = D
    (not in the original: VQ-VAE-2's conditional priors; projected like `a`, by a
    weight-normalised 1x1 convolution, into the gate input as `h` is, with the gate's init
    scale 0.1 so it starts at the scale of the conv's term).
    f is the resnet nonlinearity (concat_elu doubles channels). The value is the first half of
    c2 and the gate the second, with no tanh. Dropout (inverted, elementwise) is active when
    `training` is true, the DDI pass included, as in the original.

    Sublayers are created in the original's order (conv 1, nin of a, conv 2, conditional weights),
    which fixes the TF1 variable counters; see `creation_order`.

    `remat` (not in the original; off by default): in a training pass the block keeps only its
    inputs for the backward pass and recomputes its activations there (`keras.remat`:
    tf.recompute_grad, jax.checkpoint), about one more forward pass of time for a fraction of
    the memory. Its dropout mask is drawn before, by the same Dropout layer and seed stream, and
    kept (as booleans), so the recomputation applies the same mask and the gradients are those
    without remat to float rounding.
    """

    def __init__(self, filters, conv="down_shifted", nonlinearity="concat_elu", dropout_p=0.0,
                 aux=False, num_classes=None, ddi_epsilon=None, condition_channels=None,
                 remat=False, **kwargs):
        super().__init__(**kwargs)
        if conv not in CONVS:
            raise ConfigError(f"GatedResnet: conv={conv!r} is not one of {sorted(CONVS)}")
        if not 0.0 <= float(dropout_p) < 1.0:
            raise ConfigError(f"GatedResnet: dropout_p must be in [0, 1), got {dropout_p}")
        self.filters = int(filters)
        self.conv = conv
        self.nonlinearity = nonlinearity
        self.dropout_p = float(dropout_p)
        self.aux = bool(aux)
        self.num_classes = num_classes
        self.ddi_epsilon = ddi_epsilon
        self.condition_channels = None if condition_channels is None else int(condition_channels)
        self.remat = bool(remat)
        self._f = get_nonlinearity(nonlinearity)
        eps = {} if ddi_epsilon is None else {"ddi_epsilon": ddi_epsilon}
        conv_cls = CONVS[conv]
        dtype = {"dtype": self.dtype_policy}  # sublayers compute in the block's precision
        self.conv1 = conv_cls(self.filters, **eps, **dtype)
        self.nin_a = Nin(self.filters, **dtype) if self.aux else None
        self.dropout = (keras.layers.Dropout(self.dropout_p, **dtype)
                        if self.dropout_p > 0 else None)
        self.conv2 = conv_cls(2 * self.filters, init_scale=0.1, **eps, **dtype)
        self.cond = ConditionalWeights(2 * self.filters, **dtype) if num_classes else None
        self.cond_map = (Nin(2 * self.filters, init_scale=0.1, **dtype)
                         if self.condition_channels else None)

    def creation_order(self):
        """The weight-normalised (and conditioning) sublayers in the original's creation order."""
        return [layer for layer in (self.conv1, self.nin_a, self.conv2, self.cond, self.cond_map)
                if layer]

    def call(self, x, a=None, h=None, training=False, ctx=FULL, s=None):
        if (a is None) == self.aux:
            raise ValueError(f"{self.name}: built with aux={self.aux}, called with a={a is not None}")
        if (h is None) == bool(self.num_classes):
            raise ValueError(f"{self.name}: num_classes={self.num_classes}, "
                             f"called with h={h is not None}")
        if (s is None) == bool(self.condition_channels):
            raise ValueError(f"{self.name}: condition_channels={self.condition_channels}, "
                             f"called with s={s is not None}")
        if not (self.remat and training and ctx is FULL):  # DDI and sampler steps keep all
            drop = None if self.dropout is None else (
                lambda c: self.dropout(c, training=training))
            return self._block(x, a, h, s, ctx, drop)
        keep = None
        if self.dropout is not None and training:  # the mask of `self.dropout`, drawn now
            width = 2 * self.filters if self.nonlinearity == "concat_elu" else self.filters
            ones = ops.ones(tuple(ops.shape(x)[:-1]) + (width,), self.compute_dtype)
            keep = ops.not_equal(self.dropout(ones, training=True), 0)
        parts = list(a) if isinstance(a, (list, tuple)) else [] if a is None else [a]
        given = parts + [t for t in (h, s) if t is not None]
        names = [f"a{i}" for i in range(len(parts))] + [
            n for n, t in (("h", h), ("s", s)) if t is not None]

        def block(x, *tensors):  # the mask is closed over: no gradient, the same in the rerun
            t = dict(zip(names, tensors))
            scale = 1.0 / (1.0 - self.dropout_p)
            drop = None if keep is None else (
                lambda c: ops.where(keep, c * ops.cast(scale, c.dtype), 0))
            a = [t[f"a{i}"] for i in range(len(parts))] or None
            return self._block(x, a, t.get("h"), t.get("s"), ctx, drop)

        return keras.remat(block)(x, *given)

    def _block(self, x, a, h, s, ctx, drop):
        """The block's arithmetic; `drop`: the dropout to apply, or None."""
        if isinstance(a, (list, tuple)):
            a = ops.concatenate(list(a), axis=-1)
        c = self._conv_of_f(self.conv1, x, ctx)
        if a is not None:
            c = c + self.nin_a(self._f(a), ctx=ctx)
        if drop is not None and ctx.position is None:  # sampler steps never drop
            c = self.conv2(drop(self._f(c)), ctx=ctx)
        else:
            c = self._conv_of_f(self.conv2, c, ctx)
        if h is not None:
            c = c + self.cond(h)
        if s is not None:
            c = c + ctx.conditioned(self.cond_map, s)
        # A split, as the original's tf.split: its gradient is one concat, where two slices
        # would each scatter into a zero tensor of c's shape (StridedSliceGrad, then AddN).
        value, gate = ops.split(c, 2, axis=-1)
        return x + value * ops.sigmoid(gate)

    def _conv_of_f(self, conv, x, ctx):
        """conv(f(x)); a causal conv applies f itself (`of_activated`), so that the sampler's
        caches hold x rather than f(x)."""
        if hasattr(conv, "of_activated"):
            return conv.of_activated(x, self._f, ctx)
        return conv(self._f(x), ctx=ctx)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, conv=self.conv, nonlinearity=self.nonlinearity,
                      dropout_p=self.dropout_p, aux=self.aux, num_classes=self.num_classes,
                      ddi_epsilon=self.ddi_epsilon, condition_channels=self.condition_channels,
                      remat=self.remat)
        return config
