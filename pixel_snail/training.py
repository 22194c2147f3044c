"""PixelSNAIL's hook into the shared training loop: the model builder and the presets of the
published runs (neocxi/pixelsnail-public README commands + train.py defaults, pixel_snail.md
section 5). Importing this module registers the builder as model "pixel_snail"; nothing of the
loop is rewritten here."""
from pixel_cnn_pp.training import register_model
from pixel_snail.model import PixelSNAIL
from pixel_snail.specs import SPECS

ARCHITECTURE = ("attn_rep", "key_size", "query_size", "mixin_size", "output")


def build(config, image_shape, num_classes):
    """PixelSNAIL from a TrainConfig; its own options travel in `config.extra`."""
    return PixelSNAIL(image_shape=image_shape, nr_resnet=config.nr_resnet,
                      nr_filters=config.nr_filters, nr_logistic_mix=config.nr_logistic_mix,
                      resnet_nonlinearity=config.resnet_nonlinearity,
                      dropout_p=config.dropout_p, num_classes=num_classes, name=config.model,
                      **{k: v for k, v in config.extra.items() if k in ARCHITECTURE})


register_model("pixel_snail", build)


def _preset(spec, dataset, **training):
    spec = SPECS[spec]
    return dict(model="pixel_snail", dataset=dataset, nr_resnet=spec["nr_resnet"],
                nr_filters=spec["nr_filters"], nr_logistic_mix=spec.get("nr_logistic_mix", 1),
                resnet_nonlinearity=spec["resnet_nonlinearity"], dropout_p=spec["dropout_p"],
                extra={k: spec[k] for k in ARCHITECTURE}, **training)


# The original's optimiser settings for PixelSNAIL: Adam eps 1e-6 inside the sqrt, lr decay
# 0.999998 per step, 8 images per GPU.
_SNAIL = dict(learning_rate=1e-3, lr_decay=0.999998, adam_epsilon=1e-6, batch_size=8,
              init_batch_size=8, max_epochs=5000)

PRESETS = {
    "snail_cifar10": _preset("h12_noup_smallkey_cifar10", "cifar10", polyak_decay=0.9995,
                             save_interval=10, **_SNAIL),
    "snail_imagenet32": _preset("h12_noup_smallkey_imagenet32", "imagenet32",
                                polyak_decay=0.9997, save_interval=1, **_SNAIL),
    # The seed's set-up (binarized MNIST, Bernoulli output); its optimiser is plain Adam 1e-3,
    # here the original's Adam variant. Binarisation is a fixed threshold, not resampled.
    "snail_binarized_mnist": dict(_preset("binarized_mnist", "mnist", polyak_decay=0.9995,
                                          save_interval=1, **{**_SNAIL, "batch_size": 32,
                                                              "init_batch_size": 32,
                                                              "max_epochs": 50}),
                                  binarize=True),
}
