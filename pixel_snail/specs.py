"""Named PixelSNAIL configurations: constructor keyword arguments of `PixelSNAIL`.

    PixelSNAIL(**SPECS["h12_noup_smallkey_cifar10"])

The two published runs are `h12_noup_smallkey` with the README commands of
neocxi/pixelsnail-public and train.py's defaults for everything they do not set (nr_resnet 4,
resnet_nonlinearity elu).
"""

h12_noup_smallkey_cifar10 = dict(
    image_shape=(32, 32, 3), nr_resnet=4, nr_filters=256, nr_logistic_mix=10,
    resnet_nonlinearity="elu", dropout_p=0.5, attn_rep=12, key_size=16,
    mixin_size=128, output="logistic_mixture")

h12_noup_smallkey_imagenet32 = dict(h12_noup_smallkey_cifar10, nr_logistic_mix=32,
                                    dropout_p=0.0)

# Dynamically binarized MNIST, the set-up of the PixelSNAIL of EugenHotaj/pytorch-generative
# (its defaults), expressed in this architecture: 64 channels, 8 attention blocks, 2 residual
# units per block, key/query 4 and value 32 wide, no dropout (that model has none), one
# Bernoulli logit per pixel.
# Not expressible here: its 3x3 type-A input conv, plain (not weight-normalised) convs, 2
# positional channels (here 2C = 2, the same for C = 1), output projection inside attention,
# the skip `x + block(x)` around every block and its two-layer output head.
binarized_mnist = dict(
    image_shape=(28, 28, 1), nr_resnet=2, nr_filters=64, resnet_nonlinearity="elu",
    dropout_p=0.0, attn_rep=8, key_size=4, mixin_size=32, output="bernoulli")

SPECS = {
    "h12_noup_smallkey_cifar10": h12_noup_smallkey_cifar10,
    "h12_noup_smallkey_imagenet32": h12_noup_smallkey_imagenet32,
    "binarized_mnist": binarized_mnist,
}
