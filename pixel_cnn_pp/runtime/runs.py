"""A training run on disk, in one place: its `run.json`, the object layout of its checkpoints,
the lock of a training process, and `load_run`, the one way to get a trained model back (eval,
sampling, export).

    <save_dir>/run.json            model name, model options, image shape, dataset, TrainConfig
    <save_dir>/checkpoints/ckpt-N  the layout of `checkpoint()`; N is the training step
    <save_dir>/.lock               pid, host and start time of the run training in it

Checkpoints are found from their files, not only from TensorFlow's `checkpoints/checkpoint`
state file: with that file missing or damaged a run would otherwise look empty, start afresh and
overwrite them. A damaged newest checkpoint is skipped, with a warning, for the newest readable.
"""
import contextlib
import dataclasses
import json
import os
import re
import socket
import time

import tensorflow as tf

from pixel_cnn_pp.errors import CheckpointError
from pixel_cnn_pp.model.optim import PolyakAverage
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.runtime import atomic
from pixel_cnn_pp.runtime.config import TrainConfig

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
LOCK_FILE = ".lock"
WEIGHTS = ("ema", "raw")
# TrainConfig fields a resumed run may change freely: they do not change what is trained.
FREE_TO_CHANGE = ("max_epochs", "save_interval", "num_samples", "jit_compile", "init_batch_size",
                  "tf1_checkpoint", "tf1_weights", "remat")  # remat: the same step, less memory
# run.json files written before tf1_checkpoint was named so hold "init_from_tf1_checkpoint"
# instead: free to change too, so it is never compared and those runs resume as they are.


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


def run_differences(old, new):
    """[(setting, old value, new value)] where two run.json contents define different runs;
    settings are named as train.py's flags (model options one by one)."""
    differences = [(key, old.get(key), new[key]) for key in
                   ("model", "image_shape", "num_classes", "dataset", "binarize")
                   if old.get(key) != new[key]]
    old_options, new_options = old.get("model_options", {}), new["model_options"]
    differences += [(key, old_options.get(key), new_options.get(key))
                    for key in sorted(set(old_options) | set(new_options))
                    if key not in FREE_TO_CHANGE and old_options.get(key) != new_options.get(key)]
    old_config, new_config = old.get("train_config", {}), new["train_config"]
    # A setting added since a run.json was written is that run's default (its behaviour then).
    old_config = {**dataclasses.asdict(TrainConfig()), **old_config}
    return differences + [(key, old_config.get(key), value) for key, value in new_config.items()
                          if key not in FREE_TO_CHANGE and old_config.get(key) != value]


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


def checkpoint_files(ckpt_dir):
    """Prefixes of the complete checkpoints in a folder (index and data files present), newest
    (highest step) first."""
    found = []
    for index in tf.io.gfile.glob(os.path.join(ckpt_dir, "ckpt-*.index")):
        prefix = index[:-len(".index")]
        match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
        if match and tf.io.gfile.glob(prefix + ".data-*"):
            found.append((int(match.group(1)), prefix))
    return [prefix for _, prefix in sorted(found, reverse=True)]


def repair_state(ckpt_dir, log):
    """Rewrite TensorFlow's state file from the checkpoints present when it is missing,
    unreadable or names a file that is gone; `tf.train.CheckpointManager` reads only that file."""
    found = checkpoint_files(ckpt_dir)
    if not found:
        return
    state = tf.train.get_checkpoint_state(ckpt_dir)  # None if missing or unparseable
    listed = list(state.all_model_checkpoint_paths) if state else []
    if listed and all(tf.io.gfile.exists(p + ".index") for p in listed) \
            and state.model_checkpoint_path in listed:
        return
    oldest_first = list(reversed(found))
    # With their times, so that tf.train.CheckpointManager keeps managing (rotating) them.
    times = [tf.io.gfile.stat(p + ".index").mtime_nsec / 1e9 for p in oldest_first]
    tf.compat.v1.train.update_checkpoint_state(
        ckpt_dir, found[0], all_model_checkpoint_paths=oldest_first,
        all_model_checkpoint_timestamps=times, last_preserved_timestamp=min(times))
    log(f"warning: {os.path.join(ckpt_dir, 'checkpoint')} was missing, unreadable or stale; "
        f"rebuilt it from the {len(found)} checkpoint(s) present (newest {found[0]})")


def restore_newest(ckpt, ckpt_dir, log, partial=False):
    """Restore `ckpt` from the newest readable checkpoint of the folder; a damaged one is
    skipped with a warning. Returns its prefix, None if the folder holds no checkpoint, or
    CheckpointError naming the files if none is readable. `partial`: objects of the file
    that `ckpt` does not hold (an optimizer) are fine."""
    failures = []
    for prefix in checkpoint_files(ckpt_dir):
        try:
            status = ckpt.restore(prefix)
            if partial:
                status.expect_partial()
            status.assert_existing_objects_matched()
            return prefix
        # Damaged files: TF's checksum and read errors (a truncated file gives IndexError in
        # its reader); a checkpoint of another model: AssertionError, ValueError.
        except (AssertionError, ValueError, IndexError, OSError, tf.errors.OpError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log(f"warning: checkpoint {prefix} cannot be restored ({reason[:200]}); "
                "trying the next older one")
            failures.append(f"{os.path.basename(prefix)} ({reason[:120]})")
    if failures:
        raise CheckpointError(f"no readable checkpoint in {ckpt_dir!r}: "
                              + "; ".join(failures[:3]))
    return None


class RunLock:
    """`<save_dir>/.lock` while a run trains there: a second run on the same save dir is
    refused with the holder's pid, host and start time; a lock whose process is gone (same
    host) is taken over with a warning. Local folders only (remote storage has no exclusive
    create); a multi-worker run's chief holds it."""

    def __init__(self, save_dir, log=print):
        self.path = os.path.join(save_dir, LOCK_FILE)
        self.log = log
        self.held = False

    def __enter__(self):
        if "://" in self.path:
            return self
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = self._holder()
                if holder == {}:  # released meanwhile
                    continue
                if holder is None or (holder.get("host") == me["host"]
                                      and not atomic.pid_alive(int(holder.get("pid", -1)))):
                    self.log(f"warning: taking over the stale lock {self.path} "
                             f"({holder or 'unreadable'}: that process is gone)")
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise CheckpointError(
                    f"--save_dir={os.path.dirname(self.path)!r} is in use by another run (pid "
                    f"{holder.get('pid')} on {holder.get('host')}, started "
                    f"{holder.get('started')}); wait for it, use another save_dir, or delete "
                    f"{self.path} if that run is gone")
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise CheckpointError(f"cannot take the lock {self.path}: it keeps changing")

    def _holder(self):
        for _ in range(5):  # the holder may be writing it right now
            try:
                with open(self.path) as f:
                    return json.load(f)
            except FileNotFoundError:
                return {}
            except ValueError:
                time.sleep(0.05)
        return None

    def __exit__(self, *exc):
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False
        return False


def load_run(save_dir, weights="ema", strategy=None, log=print, run=None):
    """The model of a training run with the weights of its newest readable checkpoint: the
    Polyak averages (`weights="ema"`, what the original evaluates and samples with) or the raw
    ones. Built inside `strategy.scope()` if given, for distributed evaluation. `run`: the
    run.json already read (`read_run`), else it is read here."""
    if weights not in WEIGHTS:
        raise CheckpointError(f"weights={weights!r} is not one of {WEIGHTS}")
    run = read_run(save_dir) if run is None else run
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = build_run_model(run)
        model.build_all()
        ema = PolyakAverage(model.trainable_variables)
    ckpt_dir = os.path.join(save_dir, CHECKPOINTS)
    path = restore_newest(checkpoint(model, ema.shadows), ckpt_dir, log, partial=True)
    if path is None:
        raise CheckpointError(f"--save_dir={save_dir!r} holds no checkpoint; train first")
    if weights == "ema":
        ema.copy_to_model()
    return Run(model, run, int(path.rsplit("-", 1)[-1]), path)
