"""PixelSNAIL's training set-ups for `train.py --preset=NAME`: flag values, as in
`pixel_cnn_pp/presets.py` (flags given on the command line still win). The published runs use
neocxi/pixelsnail-public's README commands and its train.py defaults."""
from pixel_snail.specs import SPECS


def _preset(spec, dataset, **training):
    """Flags of a named spec (`specs.SPECS`; the image shape comes from the dataset)."""
    options = {k: v for k, v in SPECS[spec].items() if k != "image_shape"}
    return dict(model="pixel_snail", dataset=dataset, **options, **training)


# The original's optimiser settings for PixelSNAIL: Adam eps 1e-6 inside the sqrt, lr decay
# 0.999998 per step, 8 images per GPU.
_SNAIL = dict(learning_rate=1e-3, lr_decay=0.999998, adam_epsilon=1e-6, batch_size=8,
              init_batch_size=8, max_epochs=5000)

PRESETS = {
    "snail_cifar10": _preset("h12_noup_smallkey_cifar10", "cifar10", polyak_decay=0.9995,
                             save_interval=10, **_SNAIL),
    "snail_imagenet32": _preset("h12_noup_smallkey_imagenet32", "imagenet32",
                                polyak_decay=0.9997, save_interval=1, **_SNAIL),
    # The set-up of the PixelSNAIL of EugenHotaj/pytorch-generative (binarized MNIST, Bernoulli
    # output); its optimiser is plain Adam 1e-3, here the original's Adam variant. Binarisation
    # is a fixed threshold, not resampled.
    "snail_binarized_mnist": _preset("binarized_mnist", "mnist", polyak_decay=0.9995,
                                     save_interval=1, binarize=True,
                                     **{**_SNAIL, "batch_size": 32, "init_batch_size": 32,
                                        "max_epochs": 50}),
}
