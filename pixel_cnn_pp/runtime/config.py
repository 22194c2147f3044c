"""The settings of a training run: `TrainConfig` (checked when it is made), the named datasets'
image shapes, and the flat {flag: value} settings of presets and flags turned into a config.
Settings only, with no TensorFlow import: the JAX benchmark reads presets through it too."""
import dataclasses
import math

from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model import registry


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of a run; defaults are the original PixelCNN++ train.py's.

    `model` is a registered model name and `model_options` its keyword arguments
    (`pixel_cnn_pp.model.registry.build_model`) besides the image shape and the class count,
    which come from the dataset; the model validates them. Field names are the flags of train.py,
    and a bad value is refused with one line naming the flag.
    """
    model: str = "pixel_cnn_pp"
    model_options: dict = dataclasses.field(default_factory=dict)
    class_conditional: bool = False
    batch_size: int = 16  # per replica
    init_batch_size: int = 16
    learning_rate: float = 1e-3
    lr_decay: float = 0.999995
    adam_epsilon: float = 1e-8
    polyak_decay: float = 0.9995
    max_epochs: int = 5000
    save_interval: int = 20
    steps_per_epoch: int = 0  # 0: whole epochs
    num_samples: int = 16  # per sample grid at each checkpoint; 0: no grids
    seed: int = 1
    jit_compile: bool = False  # XLA for the forward + backward of a training step
    # A likelihood-ratio background model (Ren et al. 2019): training images perturbed and the
    # weights penalised; 0 is the original's training, bit for bit.
    mutation_rate: float = 0.0  # probability that a training sub-pixel is a random level
    l2_weight: float = 0.0  # lambda of the L2 penalty on the applied weights, per image
    tf1_checkpoint: str = ""  # start from an original TF1 checkpoint instead of DDI
    tf1_weights: str = "ema"  # its Polyak shadows ("ema") or raw weights ("raw")

    def __post_init__(self):
        for name in ("batch_size", "init_batch_size", "max_epochs", "save_interval"):
            _check(name, getattr(self, name), lambda v: v >= 1, ">= 1")
        _check("num_samples", self.num_samples, lambda v: v >= 0, ">= 0")
        _check("steps_per_epoch", self.steps_per_epoch, lambda v: v >= 0, ">= 0")
        _check("learning_rate", self.learning_rate, lambda v: 0 < v < math.inf,
               "positive and finite")
        _check("lr_decay", self.lr_decay, lambda v: 0 < v <= 1, "in (0, 1]")
        _check("adam_epsilon", self.adam_epsilon, lambda v: 0 < v < math.inf,
               "positive and finite")
        _check("polyak_decay", self.polyak_decay, lambda v: 0 <= v < 1, "in [0, 1)")
        _check("mutation_rate", self.mutation_rate, lambda v: 0 <= v <= 1, "in [0, 1]")
        _check("l2_weight", self.l2_weight, lambda v: 0 <= v < math.inf, ">= 0 and finite")
        if self.tf1_weights not in ("ema", "raw"):
            raise ConfigError(f"--tf1_weights={self.tf1_weights!r} is not one of ema, raw")


def _check(name, value, ok, what):
    if not ok(value):  # NaN fails every comparison, so it is refused too
        raise ConfigError(f"--{name}={value} must be {what}")


# Image shape of each named dataset (`data.load`; a folder's comes from its files).
DATASET_SHAPES = {"cifar10": (32, 32, 3), "imagenet32": (32, 32, 3), "mnist": (28, 28, 1),
                  "digits": (8, 8, 1)}


def from_settings(settings, **fixed):
    """(TrainConfig, dataset name, binarize) from flat settings {flag: value}, as presets and
    train.py's flags give them: `model`, the model's options (its keyword arguments, checked
    against its signature; `mixed_precision` is its `dtype`), `dataset`, `binarize` and
    TrainConfig fields. `fixed`: further TrainConfig fields."""
    settings = dict(settings)
    dataset = settings.pop("dataset", "digits")
    binarize = settings.pop("binarize", False)
    model = settings.pop("model", TrainConfig.model)
    accepted = registry.model_options(model)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    options = {k: settings.pop(k) for k in list(settings) if k in accepted and k not in fields}
    if "mixed_precision" in settings:
        options["dtype"] = settings.pop("mixed_precision")
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"{', '.join('--' + k for k in unknown)}: not an option of "
                          f"--model={model}")
    return TrainConfig(model=model, model_options=options, **settings, **fixed), dataset, binarize


def from_preset(name, **overrides):
    """(TrainConfig, dataset name, binarize) of a named preset (`registry.presets()`), with
    `overrides` {flag: value} on top."""
    presets = registry.presets()
    if name not in presets:
        raise ConfigError(f"--preset={name!r} is not one of {', '.join(presets)}")
    return from_settings({**presets[name], **overrides})
