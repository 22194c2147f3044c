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

_VQVAE2 = dict(nr_filters=256, nr_resnet=4, attn_rep=4, resnet_nonlinearity="elu",
               dropout_p=0.1, key_size=16, learning_rate=3e-4, lr_decay=1.0, adam_epsilon=1e-8,
               batch_size=32, init_batch_size=32, polyak_decay=0.9995, max_epochs=420,
               save_interval=10)

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
    # Priors over VQ-VAE-2 codes (Razavi et al. 2019): the top prior over its 32x32 codes of a
    # 512-entry codebook, and the bottom prior over the 64x64 codes, conditioned on the top
    # codes (the file's test/train_condition). Network sizes, dropout, learning rate, batch and
    # epochs are those of rosinality/vq-vae-2-pytorch's train_pixelsnail.py (channel 256,
    # 4 blocks of 4 residual blocks, dropout 0.1, lr 3e-4 constant, batch 32, 420 epochs); its
    # bottom prior has no attention, this one keeps PixelSNAIL's (chosen: one model, one
    # sampler). The optimiser is the original's Adam variant with Polyak averaging; key size
    # 16 and values F/2 as h12_noup_smallkey. The code count comes from the file (or
    # --num_codes).
    "vqvae2_top": dict(model="pixel_snail", dataset="codes", output="categorical",
                       **_VQVAE2),
    "vqvae2_bottom": dict(model="pixel_snail", dataset="codes", output="categorical",
                          **_VQVAE2),
}
