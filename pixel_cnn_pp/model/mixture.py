"""Discretized mixture of logistics: Keras twins of `nn.discretized_mix_logistic_loss` and
`nn.sample_from_discretized_mix_logistic` (openai/pixel-cnn `pixel_cnn_pp/nn.py`).

Parameter layout for C = 3 (the original), 10*M channels:
    [ logits (M) | R: mean, log_scale, coeff (M each) | G: ... | B: ... ]
The three coeff groups are alpha (R->G), beta (R->B), gamma (G->B) after tanh.
For C = 1 (grayscale, not in the original) the same layout without coefficients, 3*M channels:
    [ logits (M) | mean (M) | log_scale (M) ]

Images are in [-1, 1] on the grid -1 + 2k/255 (x = (x_uint8 - 127.5) / 127.5).
"""
import math

from keras import ops

from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model.levels import ImageLevels
from pixel_cnn_pp.model.ops import log_prob_from_logits, log_sum_exp

LOG_SCALE_MIN = -7.0
HALF_BIN = 1.0 / 255.0
EDGE = 0.999
CDF_DELTA_MIN = 1e-5
LOG_HALF_LEVELS = math.log(127.5)
UNIFORM_MIN = 1e-5  # the sampler's uniforms lie in [1e-5, 1 - 1e-5]


def num_mixture_params(channels, nr_mix):
    """Output channels of the network for `channels` image channels and `nr_mix` components."""
    if channels == 3:
        return 10 * nr_mix
    if channels == 1:
        return 3 * nr_mix
    raise ConfigError(f"discretized logistic mixture supports 1 or 3 channels, got {channels}")


def _unpack(l, channels):
    """l (..., P) -> logits (..., M), means, log_scales, coeffs (..., C, M); coeffs None if C = 1."""
    nr_mix = l.shape[-1] // (10 if channels == 3 else 3)
    lead = tuple(-1 if d is None else d for d in l.shape[:-1])
    logits = l[..., :nr_mix]
    per_channel = 3 * nr_mix if channels == 3 else 2 * nr_mix
    rest = ops.reshape(l[..., nr_mix:], lead + (channels, per_channel))
    means = rest[..., :nr_mix]
    log_scales = ops.maximum(rest[..., nr_mix:2 * nr_mix], LOG_SCALE_MIN)
    coeffs = ops.tanh(rest[..., 2 * nr_mix:3 * nr_mix]) if channels == 3 else None
    return logits, means, log_scales, coeffs


def _log_prob_bin(x, means, log_scales):
    """log P(bin of x) under logistic(means, exp(log_scales)), the original's four branches."""
    centered = x - means
    inv_stdv = ops.exp(-log_scales)
    plus_in = inv_stdv * (centered + HALF_BIN)
    min_in = inv_stdv * (centered - HALF_BIN)
    cdf_delta = ops.sigmoid(plus_in) - ops.sigmoid(min_in)
    log_cdf_plus = plus_in - ops.softplus(plus_in)  # log CDF(x + 1/255), for x = 0
    log_one_minus_cdf_min = -ops.softplus(min_in)  # log (1 - CDF(x - 1/255)), for x = 255
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * ops.softplus(mid_in)
    # The 1e-12 guard is never selected; it keeps the gradient of the unselected branch finite
    # (`where` back-propagates into both branches, and 0 * NaN = NaN).
    inner = ops.where(cdf_delta > CDF_DELTA_MIN,
                      ops.log(ops.maximum(cdf_delta, 1e-12)),
                      log_pdf_mid - LOG_HALF_LEVELS)
    return ops.where(x < -EDGE, log_cdf_plus,
                     ops.where(x > EDGE, log_one_minus_cdf_min, inner))


def coupled_means(x, means, coeffs):
    """Channel-conditioned means, teacher-forced with the true earlier channels:
    R: mu_R; G: mu_G + alpha x_R; B: mu_B + beta x_R + gamma x_G.

    x: (..., 3, 1); means, coeffs (tanh'ed): (..., 3, M) -> (..., 3, M).
    """
    m_g = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
    m_b = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
    return ops.stack([means[..., 0, :], m_g, m_b], axis=-2)


def discretized_mix_logistic_log_prob(x, l):
    """Per-pixel log-likelihood in nats. x: (..., C) in [-1, 1]; l: (..., P) -> (...)."""
    channels = x.shape[-1]
    logits, means, log_scales, coeffs = _unpack(l, channels)
    x = ops.expand_dims(x, -1)  # (..., C, 1) against (..., C, M)
    if channels == 3:
        means = coupled_means(x, means, coeffs)
    log_probs = ops.sum(_log_prob_bin(x, means, log_scales), axis=-2)
    return log_sum_exp(log_probs + log_prob_from_logits(logits))


def discretized_mix_logistic_log_prob_subpixels(x, l):
    """Per-sub-pixel log-likelihoods in nats, the exact chain-rule conditionals of the mixture:
    log p(R), log p(G | R), log p(B | R, G). x: (..., C) in [-1, 1]; l: (..., P) -> (..., C).

    The mixture is over whole pixels (each component couples R, G and B), so the conditionals
    are not per-component terms: with a_c[k] = log pi_k + the component's log-probabilities of
    channels 0..c (cumulative), log p(channel c | earlier) = LSE_k a_c - LSE_k a_(c-1), the
    mixture weights updated by the channels seen. They sum to `discretized_mix_logistic_log_prob`
    to float rounding (telescoping) and each is normalised over its 256 levels. C = 1: the
    pixel term.
    """
    channels = x.shape[-1]
    logits, means, log_scales, coeffs = _unpack(l, channels)
    x = ops.expand_dims(x, -1)
    if channels == 3:
        means = coupled_means(x, means, coeffs)
    cumulative = ops.cumsum(_log_prob_bin(x, means, log_scales), axis=-2)  # (..., C, M)
    totals = log_sum_exp(cumulative + ops.expand_dims(log_prob_from_logits(logits), -2))
    return ops.concatenate([totals[..., :1], totals[..., 1:] - totals[..., :-1]], axis=-1)


def discretized_mix_logistic_loss(x, l, sum_all=True):
    """Ports `nn.discretized_mix_logistic_loss`: negative log-likelihood in nats.

    x: (B, H, W, C) in [-1, 1]; l: (B, H, W, P). Returns the sum over everything (a scalar) if
    `sum_all`, else the sum over H and W, shape (B,). Not a mean, as in the original.
    """
    nll = -discretized_mix_logistic_log_prob(x, l)
    return ops.sum(nll) if sum_all else ops.sum(nll, axis=(1, 2))


def sample_from_discretized_mix_logistic(l, u_mix, u_logistic):
    """Ports `nn.sample_from_discretized_mix_logistic` with its random draws passed in.

    l: (..., P); u_mix: (..., M) and u_logistic: (..., C), uniforms in [1e-5, 1 - 1e-5].
    Returns (..., C) in [-1, 1], continuous (the original does not round). One component is
    chosen per pixel by Gumbel-max and shared by all channels; channels are coupled through the
    clipped samples of the earlier ones.
    """
    channels = u_logistic.shape[-1]
    logits, means, log_scales, coeffs = _unpack(l, channels)
    nr_mix = logits.shape[-1]
    choice = ops.argmax(logits - ops.log(-ops.log(u_mix)), axis=-1)
    sel = ops.expand_dims(ops.one_hot(choice, nr_mix, dtype=l.dtype), -2)  # (..., 1, M)
    means = ops.sum(means * sel, axis=-1)
    log_scales = ops.sum(log_scales * sel, axis=-1)
    x = means + ops.exp(log_scales) * (ops.log(u_logistic) - ops.log(1.0 - u_logistic))
    if channels == 1:
        return ops.clip(x, -1.0, 1.0)
    coeffs = ops.sum(coeffs * sel, axis=-1)
    x0 = ops.clip(x[..., 0], -1.0, 1.0)
    x1 = ops.clip(x[..., 1] + coeffs[..., 0] * x0, -1.0, 1.0)
    x2 = ops.clip(x[..., 2] + coeffs[..., 1] * x0 + coeffs[..., 2] * x1, -1.0, 1.0)
    return ops.stack([x0, x1, x2], axis=-1)


class DiscretizedMixLogistic(ImageLevels):
    """The output distribution of PixelCNN++: parameter count, log-likelihood and sampler.

    A small value object so that models with other outputs (PixelSNAIL's Bernoulli) plug into
    the same likelihood and sampling code.
    """

    binary = False  # a distribution over all 256 levels

    def __init__(self, nr_mix, channels=3):
        if int(nr_mix) <= 0:
            raise ConfigError(f"nr_logistic_mix must be positive, got {nr_mix}")
        self.nr_mix = int(nr_mix)
        self.channels = int(channels)
        self.num_params = num_mixture_params(self.channels, self.nr_mix)

    def log_prob(self, x, params):
        """Per-pixel log-likelihood in nats: (..., C), (..., P) -> (...)."""
        return discretized_mix_logistic_log_prob(x, params)

    def log_prob_subpixels(self, x, params):
        """Per-sub-pixel chain-rule terms in nats: (..., C), (..., P) -> (..., C)."""
        return discretized_mix_logistic_log_prob_subpixels(x, params)

    def uniform_shapes(self, lead_shape):
        """Shapes of the uniform draws `sample` consumes for parameters of shape lead + (P,)."""
        return [tuple(lead_shape) + (self.nr_mix,), tuple(lead_shape) + (self.channels,)]

    def sample(self, params, uniforms):
        """(..., P) and the draws of `uniform_shapes` -> (..., C) in [-1, 1]."""
        return sample_from_discretized_mix_logistic(params, *uniforms)
