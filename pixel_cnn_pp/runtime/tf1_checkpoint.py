"""Load checkpoints written by the original TF1 code (openai/pixel-cnn, neocxi/pixelsnail-public).

    from pixel_cnn_pp.runtime.tf1_checkpoint import load_model
    model = load_model("pxpp/params_cifar.ckpt")          # EMA weights, 32x32 images
    model.bits_per_dim(images)

The original `tf.train.Saver` stores `model/<type>_<k>/{V,g,b,hw}` (names: `tf1_names.py`),
each with a `/ExponentialMovingAverage` shadow, plus anonymous Adam
slots `Variable`, `Variable_1`, ... that carry no link to their parameter and are skipped. The
hyper-parameters are read off the shapes (`infer_hyperparameters`); the image height and width
are not in a convolutional checkpoint and are given by the caller (32x32 for the published runs).
Conversion is all-or-nothing: any missing, unexpected or wrongly shaped variable stops it with
one line that lists them, before a single weight is assigned.
"""
import os
import re

import numpy as np
import tensorflow as tf

from pixel_cnn_pp.errors import CheckpointError
from pixel_cnn_pp.model.mixture import num_mixture_params
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.tf1_names import tf1_variable_names

EMA_SUFFIX = "/ExponentialMovingAverage"
WEIGHTS = ("ema", "raw")
_LAYER = re.compile(r"model/(conv2d|dense|deconv2d|conditional_weights)_(\d+)/")


class Tf1Checkpoint:
    """The model variables of an original checkpoint: `arrays` {name: np.ndarray} (Adam slots
    dropped), `path` the checkpoint prefix."""

    def __init__(self, path, arrays):
        self.path = path
        self.arrays = arrays

    def names(self, shadows=False):
        return sorted(n for n in self.arrays if n.endswith(EMA_SUFFIX) == shadows)

    def shape(self, name):
        if name not in self.arrays:
            raise CheckpointError(f"{self.path!r} has no {name!r}, which every original "
                                  "checkpoint of this layout has")
        return tuple(self.arrays[name].shape)

    def count(self, kind):
        """Layers `<kind>_0`, `<kind>_1`, ... numbered without a gap (stray extra layers are
        reported by `mapping`, not counted)."""
        present = {int(m.group(2)) for n in self.arrays for m in [_LAYER.match(n)]
                   if m and m.group(1) == kind}
        k = 0
        while k in present:
            k += 1
        return k


def resolve_path(path):
    """A checkpoint prefix from a prefix, or from a folder holding one checkpoint."""
    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest:
            return latest
        indexes = tf.io.gfile.glob(os.path.join(path, "*.index"))
        if len(indexes) != 1:
            raise CheckpointError(f"--tf1 checkpoint folder {path!r} holds {len(indexes)} "
                                  "checkpoints (*.index); pass the prefix of one")
        return indexes[0][:-len(".index")]
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"no TF1 checkpoint at {path!r} ({path}.index is missing)")
    return path


def read(path):
    """Read every `model/...` tensor of an original checkpoint (prefix or folder)."""
    prefix = resolve_path(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"cannot read checkpoint {prefix!r}: {str(e).splitlines()[0]}")
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("model/")]
    if "model/conv2d_0/V" not in names:
        some = sorted(reader.get_variable_to_shape_map())[:3]
        raise CheckpointError(f"{prefix!r} is not an openai/pixel-cnn or pixelsnail-public "
                              f"checkpoint: no 'model/conv2d_0/V' (it holds {some}...)")
    return Tf1Checkpoint(prefix, {n: reader.get_tensor(n) for n in names})


def infer_hyperparameters(ckpt):
    """The architecture the shapes imply: {model: registered name, options: the model's
    keyword arguments, num_classes, image_channels}.

    PixelCNN++ has deconvolutions and a [2,3] input conv; PixelSNAIL neither (its input conv is
    [1,3]). Counts of layers give nr_resnet and attn_rep; widths give the rest. concat_elu
    doubles the convolutions' input width; elu and relu leave it and cannot be told apart
    (`resnet_nonlinearity` is then "elu", the PixelSNAIL default; override it if needed).
    """
    kh, kw, cin, filters = ckpt.shape("model/conv2d_0/V")
    channels = cin - 1  # the input carries an extra channel of ones
    dense = ckpt.count("dense")
    out_params = ckpt.shape(f"model/dense_{dense - 1}/V")[1]
    if ckpt.count("deconv2d"):
        model, nr_resnet, rest = "pixel_cnn_pp", (dense - 5) // 9, (dense - 5) % 9
        first_block_conv = "model/conv2d_3/V"
        attention = {}
    else:
        model, rest = "pixel_snail", (dense - 1) % 9
        attn_rep = (dense - 1) // 9
        nr_resnet = (ckpt.count("conv2d") - 2) // (2 * max(attn_rep, 1))
        first_block_conv = "model/conv2d_2/V"
        key = ckpt.shape("model/dense_5/V")[1]
        attention = dict(attn_rep=attn_rep, key_size=key,
                         mixin_size=ckpt.shape("model/dense_2/V")[1] - key,
                         output="logistic_mixture")
    if rest or nr_resnet < 1 or (kh, kw) not in ((2, 3), (1, 3)) or channels not in (1, 3):
        raise CheckpointError(f"{ckpt.path!r}: layer counts (conv2d {ckpt.count('conv2d')}, "
                              f"dense {dense}, deconv2d {ckpt.count('deconv2d')}) or input conv "
                              f"{[kh, kw, cin, filters]} fit neither original model")
    mix, unit = divmod(out_params, num_mixture_params(channels, 1))
    if unit:
        raise CheckpointError(f"{ckpt.path!r}: {out_params} output channels are not a logistic "
                              f"mixture over {channels} channels")
    wide = ckpt.shape(first_block_conv)[2] == 2 * filters
    num_classes = (ckpt.shape("model/conditional_weights_0/hw")[0]
                   if "model/conditional_weights_0/hw" in ckpt.arrays else None)
    options = dict(nr_resnet=nr_resnet, nr_filters=filters, nr_logistic_mix=mix,
                   resnet_nonlinearity="concat_elu" if wide else "elu", **attention)
    return dict(model=model, options=options, num_classes=num_classes, image_channels=channels)


def check_hyperparameters(inferred, given):
    """Raise if any explicitly given setting {flag: value} disagrees with the checkpoint's.
    `resnet_nonlinearity` elu vs relu cannot be read off the shapes, so either is accepted."""
    expected_values = dict(inferred["options"], model=inferred["model"],
                           class_conditional=inferred["num_classes"] is not None)
    bad = []
    for name, value in given.items():
        if name not in expected_values:
            continue
        expected = expected_values[name]
        if name == "resnet_nonlinearity" and expected == "elu" and value in ("elu", "relu"):
            continue
        if value != expected:
            bad.append(f"--{name}={value} (checkpoint: {expected})")
    if bad:
        raise CheckpointError("settings disagree with the TF1 checkpoint: " + ", ".join(bad)
                              + "; drop them to use the checkpoint's")


def with_architecture(settings, inferred, given):
    """Run settings {flag: value} with the architecture of a checkpoint (`infer_hyperparameters`)
    in place of theirs; `given` {flag: value}: those set explicitly (by a flag or a preset),
    which must agree with it. relu is kept where given (shapes cannot tell it from elu)."""
    check_hyperparameters(inferred, given)
    architecture = dict(inferred["options"])
    if settings.get("resnet_nonlinearity") == "relu":
        architecture["resnet_nonlinearity"] = "relu"
    return dict(settings, **architecture, model=inferred["model"],
                class_conditional=inferred["num_classes"] is not None)


def _listing(items, limit=4):
    items = list(items)
    more = f", +{len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def mapping(model, ckpt, weights="ema"):
    """[(Keras variable, np.ndarray)] for every weight of `model`, or CheckpointError with the
    missing, unexpected and mis-shaped names. weights="ema" takes the Polyak shadows."""
    if weights not in WEIGHTS:
        raise CheckpointError(f"--tf1_weights={weights!r} is not one of {WEIGHTS}")
    suffix = EMA_SUFFIX if weights == "ema" else ""
    if weights == "ema" and not ckpt.names(shadows=True):
        raise CheckpointError(f"{ckpt.path!r} holds no {EMA_SUFFIX} shadows; "
                              "use --tf1_weights=raw")
    wanted = tf1_variable_names(model)
    missing = [n + suffix for n in wanted if n + suffix not in ckpt.arrays]
    unexpected = [n for n in ckpt.names() if n not in wanted]
    shapes = [f"{n + suffix} {list(ckpt.shape(n + suffix))} vs model {list(v.shape)}"
              for n, v in wanted.items()
              if n + suffix in ckpt.arrays and ckpt.shape(n + suffix) != tuple(v.shape)]
    problems = [f"{len(items)} {what}: {_listing(items)}" for what, items in
                (("missing", missing), ("unexpected", unexpected),
                 ("with the wrong shape", shapes)) if items]
    if problems:
        raise CheckpointError(f"{ckpt.path!r} does not fit {type(model).__name__}"
                              f"({_describe(model)}): " + "; ".join(problems))
    return [(v, ckpt.arrays[n + suffix]) for n, v in wanted.items()]


def _describe(model):
    config = model.get_config()
    keys = ("nr_resnet", "nr_filters", "nr_logistic_mix", "attn_rep", "num_classes")
    return ", ".join(f"{k}={config[k]}" for k in keys if config.get(k) is not None)


def assign(model, ckpt, weights="ema"):
    """Copy the checkpoint's weights into a built `model` (all or nothing)."""
    for variable, value in mapping(model, ckpt, weights):
        variable.assign(value.astype(np.float32))


def model_for(inferred, image_size=(32, 32), resnet_nonlinearity=None, **options):
    """A built model of the inferred architecture for images of `image_size` (H, W); `options`
    (e.g. dropout_p) are further keyword arguments of the model."""
    architecture = dict(inferred["options"])
    if resnet_nonlinearity:
        check_hyperparameters(inferred, {"resnet_nonlinearity": resnet_nonlinearity})
        architecture["resnet_nonlinearity"] = resnet_nonlinearity
    model = build_model(inferred["model"], (*image_size, inferred["image_channels"]),
                        num_classes=inferred["num_classes"], **{**architecture, **options})
    model.build_all()
    return model


def load_model(path, image_size=(32, 32), weights="ema", resnet_nonlinearity=None):
    """The Keras model of an original checkpoint with its EMA (or raw) weights. `path`: a
    prefix or folder, or a `Tf1Checkpoint` already read."""
    ckpt = path if isinstance(path, Tf1Checkpoint) else read(path)
    model = model_for(infer_hyperparameters(ckpt), image_size, resnet_nonlinearity,
                      dropout_p=0.0)
    assign(model, ckpt, weights)
    return model
