"""A categorical output over K codes, for priors over discrete code maps (VQ-VAE codes, as in
van den Oord et al. 2017 and Razavi et al. 2019): a softmax over the K entries at each position,
as rosinality/vq-vae-2-pytorch's PixelSNAIL prior.

Same interface as `pixel_cnn_pp.model.mixture.DiscretizedMixLogistic` and the Bernoulli output,
plus how data enters the network: a code map (B, H, W) of ints in [0, K) is given to the network
one-hot, x (B, H, W, K) float (the network's first convolutions are its embedding: a one-hot
input to a convolution is an embedding lookup per tap, so no separate embedding table is
needed, and the sampler writes a drawn code into its image the way it writes a pixel).
"""
from keras import ops

from pixel_cnn_pp.errors import ConfigError


class Categorical:
    """params: (..., K) logits; x: (..., K) one-hot codes. One code per position: the
    "sub-pixel" term is the position's term."""

    binary = False
    data_channels = 1  # one code per position

    def __init__(self, num_codes):
        if num_codes is None or int(num_codes) < 2:
            raise ConfigError(f"num_codes must be at least 2 for output='categorical', "
                              f"got {num_codes}")
        self.num_codes = int(num_codes)
        self.num_params = self.input_channels = self.num_codes

    # -- data <-> the network's x -----------------------------------------------------------

    def encode(self, codes):
        """int codes (...,) -> one-hot float32 (..., K), what the network sees."""
        return ops.one_hot(ops.cast(codes, "int32"), self.num_codes, dtype="float32")

    def decode(self, x):
        """one-hot x (..., K) -> int32 codes (...,)."""
        return ops.cast(ops.argmax(x, axis=-1), "int32")

    def quantize(self, x):
        """A drawn x is one-hot already: what is fed back is what is returned."""
        return x

    # -- likelihood and sampling ------------------------------------------------------------

    def log_prob(self, x, params):
        """log p(code) in nats: (..., K) one-hot, (..., K) logits -> (...); exact log-softmax."""
        m = ops.max(params, axis=-1, keepdims=True)
        log_z = ops.squeeze(m, -1) + ops.log(ops.sum(ops.exp(params - m), axis=-1))
        return ops.sum(ops.cast(x, params.dtype) * params, axis=-1) - log_z

    def log_prob_subpixels(self, x, params):
        """(..., 1): one code per position, so the position's term."""
        return ops.expand_dims(self.log_prob(x, params), -1)

    def uniform_shapes(self, lead_shape):
        """K uniforms per position, for a Gumbel-max draw."""
        return [tuple(lead_shape) + (self.num_codes,)]

    def sample(self, params, uniforms, temperature=None):
        """(..., K) logits -> one-hot (..., K): argmax(logits / T + Gumbel(u)), a draw from
        softmax(logits / T) (T = `temperature`, None or 1.0 the model's distribution), as the
        mixture draws its component."""
        (u,) = uniforms
        logits = ops.cast(params, "float32")
        if temperature is not None:
            logits = logits / ops.cast(temperature, "float32")
        choice = ops.argmax(logits - ops.log(-ops.log(u)), axis=-1)
        return ops.one_hot(choice, self.num_codes, dtype=params.dtype)
