"""The output distributions a model can take, by name: the original's discretized logistic
mixture over 8-bit images, or a categorical over K codes (`categorical.py`)."""
from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model.categorical import Categorical
from pixel_cnn_pp.model.mixture import DiscretizedMixLogistic

OUTPUTS = ("logistic_mixture", "categorical")


def make_output(output, channels, nr_mix, num_codes, outputs=OUTPUTS):
    """The distribution named `output` (one of `outputs`, which a model may extend) for data
    of `channels` channels."""
    if output not in outputs:
        raise ConfigError(f"output={output!r} is not one of {tuple(outputs)}")
    if output == "categorical":
        if channels != 1:
            raise ConfigError(f"output='categorical' models code maps: image_shape (H, W) or "
                              f"(H, W, 1), got {channels} channels")
        return Categorical(num_codes)
    if num_codes is not None:
        raise ConfigError(f"num_codes={num_codes} needs output='categorical'")
    return DiscretizedMixLogistic(nr_mix, channels)
