"""The user-facing API shared by PixelCNN++ and PixelSNAIL: data-dependent init, log-likelihood,
bits/dim, sampling and completion, over images or (a categorical output) code maps, optionally
conditioned on a class and on a spatial condition map. Subclasses define `call` and the output
`distribution`."""
import math

import keras
import numpy as np
from keras import ops

from pixel_cnn_pp.errors import ConfigError, DataError
from pixel_cnn_pp.model import sampling
from pixel_cnn_pp.model.levels import float_to_images, images_to_float  # noqa: F401 (API)
from pixel_cnn_pp.model.passes import INIT


# Keras dtype policies a model may take: bfloat16 compute with float32 variables needs no loss
# scaling; the loss and bits/dim are float32 in both (`nll`).
PRECISIONS = ("float32", "mixed_bfloat16")
# What `log_likelihood` returns a term for: each image (B,), pixel (B, H, W), sub-pixel (B, H, W, C).
REDUCTIONS = ("image", "pixel", "subpixel")


class AutoregressiveModel(keras.Model):
    """Base class: a network over images of `image_shape` = (H, W, C) whose output at each pixel
    parameterises `self.distribution` given the pixels before it in raster order.

    `call(x, class_label=None, training=False, ctx=FULL, condition=None)` takes x (B, H, W, C)
    in [-1, 1] (or, for a categorical output over K codes, one-hot (B, H, W, K): `x_shape`),
    optional integer labels (B,) and an optional condition map (`condition_shape`), and returns
    the distribution's parameters (B, H, W, P); `ctx` is the pass context (`passes.py`).

    Data: uint8 images (B, H, W, C); with a categorical output (`num_codes` = K), int code maps
    (B, H, W) in [0, K), image_shape (H, W, 1). `distribution.encode` makes x of them.
    Spatial conditioning (`condition_shape` = (Hc, Wc, D)): a float map (B, Hc, Wc, D), or with
    `condition_codes` = Kc an int code map (B, Hc, Wc) in [0, Kc) seen one-hot (D = Kc); resized
    to each level by integer factors and projected into every gated resnet (`conditioning.py`). `dtype` (a Keras argument) is the precision, one of
    PRECISIONS; every sublayer takes it from the model, so it survives get_config, `.keras`
    files and run.json without touching Keras's global policy. A model whose `call` computes a
    stack through `ctx.vertical` (one that sees only the rows above) sets `vertical_stack`, and
    the cached sampler computes that stack once per image row.
    """

    vertical_stack = False

    def __init__(self, image_shape, num_classes=None, condition_shape=None, condition_codes=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        if len(self.image_shape) != 3 or min(self.image_shape) <= 0:
            raise ConfigError(f"image_shape must be (H, W, C) with positive sizes, got {image_shape}")
        if num_classes is not None and int(num_classes) <= 1:
            raise ConfigError(f"num_classes must be at least 2 (or None), got {num_classes}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.condition_codes = None if condition_codes is None else int(condition_codes)
        self.condition_shape = None
        if condition_shape is not None:
            self.condition_shape = tuple(int(d) for d in condition_shape)
            rank = 2 if self.condition_codes else 3
            if len(self.condition_shape) != rank or min(self.condition_shape) <= 0:
                expected = "(Hc, Wc) for a code map" if rank == 2 else "(Hc, Wc, D)"
                raise ConfigError(f"condition_shape must be {expected} with positive sizes, "
                                  f"got {condition_shape}")
        if self.condition_codes is not None and (self.condition_codes < 2
                                                 or self.condition_shape is None):
            raise ConfigError(f"condition_codes={condition_codes} needs condition_shape and at "
                              "least 2 codes")
        if self.dtype_policy.name not in PRECISIONS:
            raise ConfigError(f"dtype={self.dtype_policy.name!r} is not one of "
                              f"{', '.join(PRECISIONS)} (float16 would need loss scaling)")

    @property
    def num_codes(self):
        """K of a categorical output, else None."""
        return getattr(self.distribution, "num_codes", None)

    @property
    def data_shape(self):
        """The shape of one datum: image_shape, or (H, W) for code maps."""
        return self.image_shape[:2] if self.num_codes else self.image_shape

    @property
    def x_shape(self):
        """The shape of one x the network takes: (H, W, C), or (H, W, K) one-hot codes."""
        return self.image_shape[:2] + (self.distribution.input_channels,)

    @property
    def condition_channels(self):
        """D, the width of the condition map the gated resnets project, or None."""
        if self.condition_shape is None:
            return None
        return self.condition_codes or self.condition_shape[-1]

    def condition_input(self, condition):
        """The condition map as the network takes it: (B, Hc, Wc, D) float."""
        if self.condition_codes:
            return ops.one_hot(ops.cast(condition, "int32"), self.condition_codes, dtype="float32")
        return ops.cast(condition, "float32")

    @property
    def num_dims(self):
        """Sub-pixels per image, the denominator of bits/dim (3072 for 32x32x3)."""
        return int(np.prod(self.image_shape))

    # -- input checks -----------------------------------------------------------------------

    def _check_images(self, images):
        """uint8 images (B, H, W, C) of this model's shape, B >= 1, as an array, a tensor or
        nested lists (code maps: `_check_codes`); returned as given (lists as an array)."""
        if isinstance(images, (list, tuple)):
            images = np.asarray(images)
        if self.num_codes:
            return _check_codes(images, "codes", self.data_shape, self.num_codes)
        dtype = keras.backend.standardize_dtype(images.dtype)
        if dtype != "uint8":
            raise DataError(f"images must be uint8 in [0, 255], got dtype {dtype}")
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[1:] != self.image_shape:
            raise DataError(f"images have shape {shape}; this model takes "
                            f"(batch, {', '.join(map(str, self.image_shape))})")
        if shape[0] == 0:
            raise DataError("images is an empty batch (0 images)")
        return images

    def _check_labels(self, class_label, batch):
        """(batch,) int32 labels from one int (for every image) or one per image, or None."""
        if self.num_classes is None:
            if class_label is not None:
                raise DataError("class_label given, but the model is unconditional")
            return None
        if class_label is None:
            raise DataError(f"the model is class-conditional ({self.num_classes} classes): "
                            "pass class_label")
        labels = np.asarray(ops.convert_to_numpy(class_label))
        if labels.dtype.kind not in "iu":  # floats would be truncated silently
            raise DataError(f"class_label must be integers, got dtype {labels.dtype}")
        if labels.ndim == 0:
            labels = np.full((batch,), labels)
        elif labels.shape != (batch,):
            raise DataError(f"class_label has shape {labels.shape}; expected one int or "
                            f"({batch},), one per image")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise DataError(f"class_label must be in [0, {self.num_classes}), "
                            f"got values in [{labels.min()}, {labels.max()}]")
        return labels.astype("int32")

    def _check_condition(self, condition, batch):
        """The condition map of `batch` data (checked: shape, dtype, code range), or None."""
        if self.condition_shape is None:
            if condition is not None:
                raise DataError("condition given, but the model has no condition_shape")
            return None
        if condition is None:
            raise DataError(f"the model is conditioned on a map of shape {self.condition_shape}: "
                            "pass condition")
        if self.condition_codes:
            condition = _check_codes(condition, "condition", self.condition_shape,
                                     self.condition_codes)
        else:
            condition = np.asarray(ops.convert_to_numpy(condition))
            if condition.dtype.kind != "f":
                raise DataError(f"condition must be a float map, got dtype {condition.dtype}")
            if condition.shape[1:] != self.condition_shape:
                raise DataError(f"condition has shape {condition.shape}; this model takes "
                                f"(batch, {', '.join(map(str, self.condition_shape))})")
            condition = condition.astype("float32")
        if condition.shape[0] != batch:
            raise DataError(f"condition has {condition.shape[0]} maps for {batch} data")
        return condition

    def conditioning(self, class_label):
        """One-hot conditioning vector h (B, K) of the original, or None."""
        if self.num_classes is None or class_label is None:
            return None
        return ops.one_hot(ops.cast(class_label, "int32"), self.num_classes)

    # -- building and data-dependent init ---------------------------------------------------

    def build_all(self):
        """Create every variable by running one batch of zeros (no data-dependent init)."""
        labels = None if self.num_classes is None else ops.zeros((1,), "int32")
        condition = None
        if self.condition_shape is not None:
            condition = ops.zeros((1,) + self.condition_shape,
                                  "int32" if self.condition_codes else "float32")
        self(ops.zeros((1,) + self.x_shape), class_label=labels, condition=condition)

    def get_build_config(self):
        return {"image_shape": list(self.image_shape)}

    def build_from_config(self, config):
        self.build_all()

    def initialize(self, images, class_label=None, condition=None):
        """Data-dependent init on a batch of uint8 images (the original's `init_pass`).

        Sets every weight-normalised layer's g and b so that its output on this batch has
        per-channel mean 0 and standard deviation `init_scale`. Dropout is active, as in the
        original. Run eagerly; under a tf.distribute strategy, call it inside `strategy.scope()`
        and outside `strategy.run` so every replica receives the same values.
        """
        images = self._check_images(images)
        labels = self._check_labels(class_label, images.shape[0])
        condition = self._check_condition(condition, images.shape[0])
        return self(self.distribution.encode(images), class_label=labels, training=True, ctx=INIT,
                    condition=condition)

    # -- likelihood -------------------------------------------------------------------------

    def nll(self, x, class_label=None, training=False, condition=None):
        """Negative log-likelihood in nats per image, (B,), of x (B, `x_shape`)."""
        # float32 whatever the compute dtype: bits/dim are always computed in float32.
        params = ops.cast(self(x, class_label=class_label, training=training,
                               condition=condition), "float32")
        return -ops.sum(self.distribution.log_prob(x, params), axis=(1, 2))

    def log_prob(self, x, class_label=None, reduce="image", condition=None):
        """log-likelihood in nats of x in [-1, 1] (B, H, W, C), dropout off, float32: per image
        (B,), per pixel (B, H, W) or per sub-pixel (B, H, W, C), as `reduce` says (REDUCTIONS).
        Sub-pixel terms are the chain-rule conditionals of the output distribution (for the
        mixture log p(R), log p(G | R), log p(B | R, G)); they sum to the pixel terms, and those
        to the image's, to float rounding. The image term is `-nll`, the loss's arithmetic."""
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce={reduce!r} is not one of {', '.join(REDUCTIONS)}")
        if reduce == "image":
            return -self.nll(x, class_label, condition=condition)
        params = ops.cast(self(x, class_label=class_label, condition=condition), "float32")
        if reduce == "subpixel":
            return self.distribution.log_prob_subpixels(x, params)
        return self.distribution.log_prob(x, params)

    def log_likelihood(self, images, class_label=None, reduce="image", condition=None):
        """log p in nats of uint8 images (B, H, W, C) or code maps (B, H, W): (B,) per image
        (`reduce="image"`), (B, H, W) per pixel or (B, H, W, C) per sub-pixel (`log_prob`; a
        code map has one "sub-pixel" per position). Per-pixel terms are causal: a pixel's term
        depends on it and the pixels before it in raster order only."""
        images = self._check_images(images)
        labels = self._check_labels(class_label, images.shape[0])
        condition = self._check_condition(condition, images.shape[0])
        return self.log_prob(self.distribution.encode(images), labels, reduce, condition)

    def bits_per_dim(self, images, class_label=None, reduce="image", condition=None):
        """-log2 p / dimensions, (B,) per image: its batch mean is the original's bits/dim.
        reduce="pixel" (B, H, W) divides each pixel's term by C, "subpixel" (B, H, W, C) each
        term by 1: the mean of either over an image is the image's bits/dim."""
        per = {"image": self.num_dims, "pixel": self.image_shape[-1], "subpixel": 1}
        if reduce not in per:
            raise ValueError(f"reduce={reduce!r} is not one of {', '.join(REDUCTIONS)}")
        return -self.log_likelihood(images, class_label, reduce, condition) / (
            math.log(2.0) * per[reduce])

    # -- sampling ---------------------------------------------------------------------------

    def sample(self, num_samples, seed=0, class_label=None, method="cached", rounded=False,
               condition=None, temperature=1.0):
        """Draw `num_samples` uint8 images (N, H, W, C) (code maps: int32 (N, H, W)),
        reproducible for a given seed.

        What a seed fixes: the same images on the same machine under the same kernel settings
        (backend, CPU or GPU, XLA, TF_ENABLE_ONEDNN_OPTS on TensorFlow), here and in the
        export's `sample` signature, in any process and whatever the import order (this
        package sets nothing in the environment). Under other kernels the network's outputs
        agree to float rounding, and an image can diverge from the pixel on where a value lies
        within that rounding of a level boundary or two mixture components nearly tie
        (measured rates: bench/RESULTS.md, "Same images under other kernels").

        method="cached" (`sampling.cached`): each layer computes only what a new pixel changes,
        about one forward pass per image, as one compiled program. method="naive": the
        original's `sample_from_model`, one full forward pass per pixel in raster order,
        continuous samples fed back; kept as the reference. Both use the same draws, so they
        give the same images up to float rounding (a value within ~1e-6 of a level boundary may
        round to the neighbouring level). Under mixed_bfloat16 they differ by bfloat16 rounding,
        which can flip a mixture choice, so only float32 models give the same images.

        rounded=False feeds each drawn pixel back into the network as the continuous value the
        mixture's sampler returns, as the original does ("we don't actually round"); rounded=True
        feeds it back as the level it is returned as, so every pixel is conditioned on the
        returned image: exact ancestral sampling across pixels, and the images `complete`
        reproduces from their prefixes. Binary and categorical outputs draw levels already: the
        same images.

        condition: (N, ...) maps for a model with `condition_shape`. temperature (categorical
        output only): codes drawn from softmax(logits / temperature); 1.0 is the model's
        distribution.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
                or num_samples <= 0:
            raise DataError(f"num_samples must be a positive integer, got {num_samples!r}")
        if method not in sampling.METHODS:
            raise ValueError(f"method={method!r} is not one of {sorted(sampling.METHODS)}")
        labels = self._check_labels(class_label, int(num_samples))
        condition = self._check_condition(condition, int(num_samples))
        temperature = self._check_temperature(temperature)
        x = sampling.continuous(self, num_samples, seed, labels, method, rounded, condition,
                                temperature)
        return ops.convert_to_numpy(self.distribution.decode(x))

    def _check_temperature(self, temperature):
        """None for 1.0 (the model's own distribution: no division at all), else the float."""
        try:
            value = float(temperature)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0 or not math.isfinite(value):
            raise DataError(f"temperature must be a positive number, got {temperature!r}")
        if value == 1.0:
            return None
        if not self.num_codes:
            raise DataError(f"temperature={temperature} needs a categorical output; this model's "
                            "output draws from its distribution only (temperature 1.0)")
        return value

    def complete(self, images, known, seed=0, class_label=None, condition=None):
        """uint8 images (B, H, W, C) with the pixels where `known` is false drawn by the cached
        sampler, in raster order, from the model conditioned on every pixel before them (given
        or drawn); known pixels are returned as given. `known`: bool (H, W) for every image or
        (B, H, W). The draws are `sample`'s for `seed`, and drawn pixels are fed back at their
        levels, so completing the first rows of `sample(n, seed=s, rounded=True)` with seed s
        returns that sample (for a binary output, of `sample(n, seed=s)`).

        Exact: a known prefix in raster order (e.g. the top rows) conditions every pixel after
        it, as the model's chain rule says. Not exact: a known pixel after a drawn one (e.g. the
        bottom half known) does not inform it, as the model cannot look ahead; such pixels are
        kept, but the drawn ones before them ignore them (the usual approximation).
        """
        images = self._check_images(images)
        batch = images.shape[0]
        known = np.asarray(ops.convert_to_numpy(known))
        if known.dtype != bool:
            raise DataError(f"known must be a boolean mask, got dtype {known.dtype}")
        if known.shape == self.image_shape[:2]:
            known = np.broadcast_to(known, (batch,) + known.shape)
        if known.shape != (batch,) + self.image_shape[:2]:
            raise DataError(f"known has shape {known.shape}; expected {self.image_shape[:2]} or "
                            f"({batch}, {', '.join(map(str, self.image_shape[:2]))})")
        labels = self._check_labels(class_label, batch)
        condition = self._check_condition(condition, batch)
        x = sampling.complete(self, self.distribution.encode(images), known, seed, labels,
                              condition)
        return ops.convert_to_numpy(self.distribution.decode(x))

    def get_config(self):
        config = super().get_config()
        config.update(image_shape=list(self.image_shape), num_classes=self.num_classes)
        if self.condition_shape is not None:  # absent otherwise: older files read unchanged
            config.update(condition_shape=list(self.condition_shape),
                          condition_codes=self.condition_codes)
        return config


def _check_codes(codes, what, shape, num_codes):
    """Integer code maps (B, *shape) in [0, num_codes), B >= 1, as int32 numpy."""
    codes = np.asarray(ops.convert_to_numpy(codes))
    if codes.dtype.kind not in "iu":
        raise DataError(f"{what} must be integer code maps, got dtype {codes.dtype}")
    if codes.ndim != 1 + len(shape) or codes.shape[1:] != tuple(shape):
        raise DataError(f"{what} have shape {codes.shape}; this model takes "
                        f"(batch, {', '.join(map(str, shape))})")
    if codes.shape[0] == 0:
        raise DataError(f"{what} is an empty batch")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise DataError(f"{what} must be in [0, {num_codes}), got values in "
                        f"[{codes.min()}, {codes.max()}]")
    return codes.astype("int32")
