"""The 256-level grid of 8-bit images in the models' input range [-1, 1], as the original:
x = (x_uint8 - 127.5) / 127.5."""
from keras import ops


def images_to_float(images):
    """uint8 images -> float32 in [-1, 1], as the original: (x - 127.5) / 127.5."""
    return (ops.cast(images, "float32") - 127.5) / 127.5


def float_to_images(x):
    """Continuous samples in [-1, 1] -> uint8, rounded to the nearest of the 256 levels."""
    return ops.cast(ops.round(ops.clip(x * 127.5 + 127.5, 0.0, 255.0)), "uint8")


def to_levels(x):
    """x in [-1, 1] moved to the nearest level, bit for bit the float of the uint8 image that
    `float_to_images` returns (so a pixel fed back this way equals the same image given)."""
    return images_to_float(float_to_images(x))


class ImageLevels:
    """How the distributions over 8-bit images (the mixture, Bernoulli) take data: uint8
    images (..., C) enter the network as x in [-1, 1] (..., C), drawn values leave it rounded
    to their levels. `channels` is set by the distribution."""

    channels = None

    @property
    def data_channels(self):
        return self.channels

    @property
    def input_channels(self):
        return self.channels

    def encode(self, images):
        return images_to_float(images)

    def decode(self, x):
        return float_to_images(x)

    def quantize(self, x):
        return to_levels(x)
