"""A training run on disk, in one place: its `run.json`, the object layout of its checkpoints,
and `load_run`, the one way to get a trained model back (eval, sampling, export).

    <save_dir>/run.json            model name, model options, image shape, dataset, TrainConfig
    <save_dir>/checkpoints/ckpt-N  the layout of `checkpoint()`; N is the training step
"""
import contextlib
import dataclasses
import os

import tensorflow as tf

from pixel_cnn_pp.errors import CheckpointError
from pixel_cnn_pp.model.optim import PolyakAverage
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.runtime import atomic

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
WEIGHTS = ("ema", "raw")


def checkpoint(model, shadows, optimizer=None, epoch=None):
    """The checkpoint of a run: the model's variables (weights and dropout RNG state) and the
    Polyak shadows, by position in `model.variables` and `shadows`; for training also the
    optimizer and the epoch counter. Keras layers held in lists are invisible to
    tf.train.Checkpoint, hence the explicit variable lists."""
    objects = dict(variables=list(model.variables), ema=list(shadows))
    if optimizer is not None:
        objects.update(optimizer=optimizer, epoch=epoch)
    return tf.train.Checkpoint(**objects)


def run_metadata(model, dataset, config):
    """The content of run.json for `model` trained on `dataset` with `config` (a TrainConfig)."""
    return {"model": model.name, "model_options": model_options(model),
            "image_shape": list(model.image_shape), "num_classes": model.num_classes,
            "dataset": dataset.name, "binarize": dataset.binarized,
            "train_config": dataclasses.asdict(config)}


def model_options(model):
    """The keyword arguments that rebuild `model` with `build_model` (besides image_shape)."""
    config = model.get_config()
    options = {k: v for k, v in config.items() if k not in ("name", "trainable", "image_shape")}
    policy = model.dtype_policy.name
    options["dtype"] = policy
    return options


def read_run(save_dir):
    """run.json of a save dir, or CheckpointError naming the folder."""
    path = os.path.join(save_dir, RUN_FILE)
    if not tf.io.gfile.exists(path):
        raise CheckpointError(f"--save_dir={save_dir!r} holds no training run ({RUN_FILE} "
                              "missing); train first")
    return atomic.read_json(path)


def build_run_model(run):
    """The (unbuilt-weight) model that run.json describes."""
    return build_model(run["model"], run["image_shape"], **run["model_options"])


@dataclasses.dataclass
class Run:
    """A trained model with restored weights, and where they came from."""
    model: object
    metadata: dict  # run.json
    step: int
    checkpoint_path: str


def load_run(save_dir, weights="ema", strategy=None):
    """The model of a training run with the weights of its latest checkpoint: the Polyak
    averages (`weights="ema"`, what the original evaluates and samples with) or the raw ones.
    Built inside `strategy.scope()` if given, for distributed evaluation."""
    if weights not in WEIGHTS:
        raise CheckpointError(f"weights={weights!r} is not one of {WEIGHTS}")
    run = read_run(save_dir)
    latest = tf.train.latest_checkpoint(os.path.join(save_dir, CHECKPOINTS))
    if not latest:
        raise CheckpointError(f"--save_dir={save_dir!r} holds no checkpoint; train first")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_run_model(run)
        model.build_all()
        ema = PolyakAverage(model.trainable_variables)
    try:
        checkpoint(model, ema.shadows).restore(latest).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"checkpoint {latest!r} does not fit the model in "
                              f"{os.path.join(save_dir, RUN_FILE)!r}: {reason}")
    if weights == "ema":
        ema.copy_to_model()
    return Run(model, run, int(latest.rsplit("-", 1)[-1]), latest)
