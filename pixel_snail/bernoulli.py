"""A Bernoulli output distribution for binary images (binarized MNIST), the likelihood of the
PyTorch PixelSNAIL in EugenHotaj/pytorch-generative. Not in the TF1 original.

Same interface as `pixel_cnn_pp.model.mixture.DiscretizedMixLogistic`, so `AutoregressiveModel`'s
likelihood, bits/dim and sampling work unchanged. Images are in [-1, 1] (uint8 0/255 map to
-1/1); a value x > 0 counts as 1, anything else as 0.
"""
from keras import ops

from pixel_cnn_pp.model.levels import ImageLevels


class Bernoulli(ImageLevels):
    """One logit per channel: p(x_c = 1) = sigmoid(logit_c), channels independent given the
    logits. params: (..., C) logits."""

    binary = True  # meaningful on 0/255 images only: anything else is thresholded at 0

    def __init__(self, channels=1):
        if int(channels) <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.channels = int(channels)
        self.num_params = self.channels

    def log_prob(self, x, params):
        """Per-pixel log-likelihood in nats, summed over channels: (..., C), (..., C) -> (...).

        log p = t * l - softplus(l) with t = [x > 0]: minus BCE-with-logits, stable for any l.
        """
        return ops.sum(self.log_prob_subpixels(x, params), axis=-1)

    def log_prob_subpixels(self, x, params):
        """Per-channel terms in nats, (..., C): the channels are independent given the logits,
        so these are the chain-rule conditionals too (one channel: the pixel term)."""
        target = ops.cast(x > 0, params.dtype)
        return target * params - ops.softplus(params)

    def uniform_shapes(self, lead_shape):
        """One uniform per channel for parameters of shape lead + (C,)."""
        return [tuple(lead_shape) + (self.channels,)]

    def sample(self, params, uniforms):
        """(..., C) logits and uniforms u (..., C) -> (..., C) in {-1, 1}: 1 where u < sigmoid(l)."""
        (u,) = uniforms
        return ops.cast(ops.where(u < ops.sigmoid(params), 1.0, -1.0), params.dtype)
