"""The training loop shared by every model: data-dependent init, the original's Adam and Polyak
averaging under any tf.distribute strategy, resumable checkpoints, TensorBoard, sample grids.

Semantics follow the original `train.py`: the loss of each replica is the summed nats of its
batch and the replicas' gradients are summed, so an update does not depend on how a global
batch is split; the Polyak (EMA) weights are used for test bits/dim and sampling. The step
itself (loss, Adam, Polyak) is `pixel_cnn_pp.model.train_step.TrainStep`, shared with the JAX
benchmark.
"""
import contextlib
import math
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from pixel_cnn_pp.errors import CheckpointError, ConfigError, DataError, TrainingError
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.train_step import TrainStep
from pixel_cnn_pp.runtime import atomic, runs, samples
from pixel_cnn_pp.runtime.hardware import bfloat16_hint
from pixel_cnn_pp.runtime import data as data_lib
from pixel_cnn_pp.runtime.distribute import is_chief

# The host reads the losses every SYNC_EVERY steps (and at the end of an epoch), not after
# every step: a read waits for the device, which then idles until the next step is sent. A
# non-finite loss still stops the run before the epoch's checkpoint, so the last checkpoint on
# disk is a good one.
SYNC_EVERY = 20


def bits_per_dim(model, nats, num_images):
    """The original's normalisation: nats / (ln 2 * H*W*C * images)."""
    return nats / (math.log(2.0) * model.num_dims * num_images)


def eval_step(model, strategy):
    """The traced evaluation step: a distributed batch -> its summed NLL in nats over all
    replicas. Built once per run and reused, so each evaluation does not trace it again."""
    conditional = bool(model.num_classes)

    @tf.function
    def step(batch):
        def replica(images, labels, *condition):
            labels = labels if conditional else None
            return tf.reduce_sum(model.nll(model.distribution.encode(images), labels,
                                           condition=condition[0] if condition else None))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=batch),
                               axis=None)
    return step


def evaluate(model, split, strategy, global_batch, name="test", step=None):
    """Bits/dim of a tf.data split with the model's current weights, dropout off, the last
    partial batch dropped (as the original). `model` must live in `strategy`'s scope; `step`,
    `eval_step(model, strategy)` to reuse (one is built when it is None)."""
    step = step or eval_step(model, strategy)
    total, count = 0.0, 0
    for batch in strategy.experimental_distribute_dataset(data_lib.batches(split, global_batch)):
        total += float(step(batch))
        count += global_batch
    if count == 0:
        raise DataError(f"the {name} split has fewer images than one global batch "
                        f"({global_batch})")
    return bits_per_dim(model, total, count)


def check_data_fits(model, dataset, global_batch, init_batch_size=None):
    """Refuse, before any work, data that a run cannot use: a split smaller than one global
    batch (the last partial batch is dropped, so nothing would be evaluated), an init batch
    larger than the training set, or non-binary images for a binary output (a Bernoulli
    likelihood of thresholded images would be a meaningless, attractive number)."""
    for split, size in (("train", dataset.train_size), ("test", dataset.test_size)):
        if size < global_batch:
            raise DataError(f"the {split} split of --dataset={dataset.name} has {size} images, "
                            f"fewer than one global batch ({global_batch} = --batch_size x "
                            "replicas); lower --batch_size")
    if init_batch_size is not None and init_batch_size > dataset.train_size:
        raise DataError(f"--init_batch_size={init_batch_size} exceeds the {dataset.train_size} "
                        f"training images of --dataset={dataset.name}")
    if model.distribution.binary and not (dataset.binarized or data_lib.is_binary(dataset.train)):
        raise DataError(f"{model.name} has a binary output (--output=bernoulli) but "
                        f"--dataset={dataset.name} has pixels other than 0 and 255; pass "
                        "--binarize or use binary images")


def sample_labels(model, num_samples):
    """Labels of a sample grid: class-conditional models cycle through their classes."""
    if not model.num_classes:
        return None
    return (np.arange(num_samples) % model.num_classes).astype(np.int32)


def sample_conditions(model, dataset, num_samples):
    """Conditions of a sample grid: those of the first test data, cycled; None without."""
    if model.condition_shape is None:
        return None
    first = next(iter(dataset.test.batch(num_samples)))[2].numpy()
    return first[np.arange(num_samples) % len(first)]


def model_options(config, dataset):
    """The model's options: the run's, and those its data fix (code maps: a categorical output
    over the file's codes, its condition); a run's option that contradicts them is refused."""
    options = dict(config.model_options)
    fixed = dataset.model_options
    if not fixed:
        if options.get("output") == "categorical" or options.get("num_codes"):
            raise ConfigError(f"--output=categorical and --num_codes model code maps: use "
                              f"--dataset=codes (--dataset={dataset.name} holds images)")
        return options
    if options.get("output", "categorical") != "categorical":
        raise ConfigError(f"--output={options['output']}: --dataset=codes holds code maps, "
                          "which take --output=categorical")
    return {**options, **fixed}


class Trainer:
    """Owns the model, its training step (Adam, Polyak average) and the save dir of one run.
    `tf1`: the `tf1_checkpoint.Tf1Checkpoint` of `config.tf1_checkpoint` where the caller has
    read it already (else it is read when a fresh run loads it)."""

    def __init__(self, config, dataset, strategy, save_dir, log=print, tf1=None):
        self.config = config
        self.data = dataset
        self.strategy = strategy
        self.save_dir = save_dir
        self.log = log
        self.tf1 = tf1
        self.chief = is_chief(strategy)
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = config.batch_size * self.replicas
        if config.class_conditional and not dataset.num_classes:
            raise ConfigError(f"--class_conditional: dataset {dataset.name!r} has no labels")
        num_classes = dataset.num_classes if config.class_conditional else None
        with strategy.scope():
            if dataset.model_options and config.mutation_rate:
                raise ConfigError(f"--mutation_rate={config.mutation_rate} perturbs image "
                                  "levels; --dataset=codes holds code maps")
            self.model = build_model(config.model, dataset.image_shape, num_classes=num_classes,
                                     **model_options(config, dataset))
            self.model.build_all()
            check_data_fits(self.model, dataset, self.global_batch, config.init_batch_size)
            # Shadows before DDI, as the original (their g and b start at 1 and 0).
            self.step = TrainStep(self.model, config.learning_rate, config.lr_decay,
                                  config.adam_epsilon, config.polyak_decay, config.l2_weight)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.ema, self.optimizer = self.step.ema, self.step.optimizer
        self.checkpoint = runs.checkpoint(self.model, self.ema.shadows, self.optimizer,
                                          self.epoch)
        self.ckpt_dir = os.path.join(save_dir, runs.CHECKPOINTS)
        self.manager = None  # opened by restore_or_initialize, once the save dir is checked
        self._eval_step = None  # traced at the first evaluation, reused by the later ones
        self._loss_and_grads = tf.function(self._replica_loss_and_grads, jit_compile=True) \
            if config.jit_compile else self._replica_loss_and_grads
        self.train_step = self.new_train_step()

    # -- run metadata -----------------------------------------------------------------------

    def check_save_dir(self, allow_changes=False):
        """Refuse a save dir that holds a different run (model, data or any hyper-parameter
        but those of `runs.FREE_TO_CHANGE`), naming each difference, unless `allow_changes`:
        then run.json takes the new settings and records the change and its step. A new save
        dir gets its run.json."""
        path = os.path.join(self.save_dir, runs.RUN_FILE)
        new = runs.run_metadata(self.model, self.data, self.config)
        if not tf.io.gfile.exists(path):
            if self.chief:
                tf.io.gfile.makedirs(self.save_dir)
                atomic.write_json(path, new)
            return
        old = atomic.read_json(path)
        differences = runs.run_differences(old, new)
        if differences and not allow_changes:
            listed = ", ".join(f"--{key}={_short(value)} (the run: {_short(before)})"
                               for key, before, value in differences[:4])
            raise CheckpointError(
                f"--save_dir={self.save_dir!r} holds a different run: {listed}; use another "
                "save_dir, or --allow_changed_hparams to continue it with these settings")
        if differences and self.chief:
            step = _newest_step(self.save_dir)
            new["changes"] = old.get("changes", []) + [
                {"step": step, "setting": key, "from": before, "to": value}
                for key, before, value in differences]
            atomic.write_json(path, new)
            self.log(f"continuing with changed settings from step {step}: "
                     + ", ".join(key for key, _, _ in differences))

    # -- init and restore -------------------------------------------------------------------

    def restore_or_initialize(self):
        """Resume from the newest readable checkpoint, or start a fresh run: from the weights
        of `config.tf1_checkpoint`, else with data-dependent init. A save dir whose
        checkpoints are all unreadable is refused, never started afresh."""
        ckpt_dir = self.ckpt_dir
        if self.chief:
            runs.repair_state(ckpt_dir, self.log)
        else:  # every worker must write; only the chief's copy is kept
            ckpt_dir = tempfile.mkdtemp(prefix="pixelcnn_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=3)
        restored = runs.restore_newest(self.checkpoint, self.ckpt_dir, self.log)
        if restored:
            self.log(f"resumed from {restored}: step {int(self.optimizer.iterations.numpy())}, "
                     f"epoch {int(self.epoch.numpy())}")
            return True
        if self.config.tf1_checkpoint:
            self.load_tf1()
            return False
        images, labels, *condition = next(iter(data_lib.batches(
            self.data.train, self.config.init_batch_size, self.config.seed, self.data.train_size)))
        with self.strategy.scope():  # cross-replica: every replica gets the same g and b
            self.model.initialize(images.numpy(), class_label=self._labels(labels.numpy()),
                                  condition=condition[0].numpy() if condition else None)
        self.log(f"data-dependent init on {self.config.init_batch_size} training images")
        return False

    def load_tf1(self):
        """Weights of the original TF1 checkpoint `config.tf1_checkpoint`; the Polyak average
        restarts from them."""
        from pixel_cnn_pp.runtime import tf1_checkpoint
        ckpt = self.tf1 if self.tf1 is not None else tf1_checkpoint.read(self.config.tf1_checkpoint)
        self.tf1 = None  # its arrays are not needed again
        tf1_checkpoint.assign(self.model, ckpt, self.config.tf1_weights)
        self.ema.reset()
        self.log(f"loaded the {self.config.tf1_weights} weights of TF1 checkpoint {ckpt.path}")

    def _labels(self, labels):
        return labels if self.model.num_classes else None

    # -- steps ------------------------------------------------------------------------------

    def _replica_loss_and_grads(self, images, labels, *condition):
        """(summed nats, gradients of the objective): the nats, plus the L2 penalty of a
        background model where `l2_weight` is set (the nats alone are reported)."""
        with tf.GradientTape() as tape:
            loss = self.step.loss(images, self._labels(labels), *condition)
            objective = loss + self.step.penalty(tf.shape(images)[0]) \
                if self.step.l2_weight else loss
        return loss, tape.gradient(objective, self.model.trainable_variables)

    def _replica_train_step(self, images, labels, *condition):
        loss, grads = self._loss_and_grads(images, labels, *condition)
        self.step.apply(grads)  # Keras sums the replicas' gradients
        return loss

    def new_train_step(self):
        """A fresh tf.function of the global step (batch -> summed loss), traced on its first
        call: the module-level switches read at trace time (`conv.FILTER_GRADIENT`) apply to
        it. `train_step` is one; bench scripts make others to compare such switches."""
        return tf.function(self._distributed_train_step)

    def _distributed_train_step(self, batch):
        losses = self.strategy.run(self._replica_train_step, args=batch)
        self.step.update_average()  # cross-replica: one assign reaches every copy
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def distribute(self, split, seed, epoch=None):
        """Global batches of a split for `train_step`, shuffled with `seed` (None: in order);
        for a training `epoch`, mutated as `config.mutation_rate` says (a background model),
        before they are split over the replicas, so the images do not depend on how many."""
        size = None if seed is None else self.data.train_size
        batches = data_lib.batches(split, self.global_batch, seed, size)
        if epoch is not None and self.config.mutation_rate:
            batches = data_lib.mutate(batches, self.config.mutation_rate, (self.config.seed, epoch))
        return self.strategy.experimental_distribute_dataset(batches)

    # -- loops ------------------------------------------------------------------------------

    def evaluate(self, split="test"):
        """Bits/dim of a split with the Polyak weights, dropout off."""
        with self.ema.averaged():
            if self._eval_step is None:
                self._eval_step = eval_step(self.model, self.strategy)
            return evaluate(self.model, self.data.test if split == "test" else self.data.train,
                            self.strategy, self.global_batch, split, self._eval_step)

    def sample(self, num_samples, seed):
        """uint8 samples (code maps: int32) with the Polyak weights (cached sampler)."""
        with self.ema.averaged():
            return self.model.sample(num_samples, seed, sample_labels(self.model, num_samples),
                                     condition=sample_conditions(self.model, self.data,
                                                                 num_samples))

    def train(self, allow_changes=False):
        """Train to `max_epochs`, resuming if the save dir holds a checkpoint, while holding the
        save dir's lock. Returns the last test bits/dim."""
        with runs.RunLock(self.save_dir, self.log) if self.chief else contextlib.nullcontext():
            self.check_save_dir(allow_changes)
            self.restore_or_initialize()
            hint = bfloat16_hint(self.model.dtype_policy.name,
                                 self.strategy.extended.worker_devices)
            if hint and self.chief:
                self.log(hint)
            return self._train_epochs()

    def _train_epochs(self):
        config = self.config
        writers = self._summary_writers()
        steps_per_epoch = self.data.train_size // self.global_batch
        if config.steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
        test_bpd = None
        for epoch in range(int(self.epoch.numpy()), config.max_epochs):
            bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=["bpd", "img/s"],
                                      verbose=1 if self.chief else 0)
            start, total = time.time(), 0.0
            # next() exactly steps_per_epoch times: reaching the end of a distributed
            # iterator after training steps was measured to stall for seconds.
            batches = iter(self.distribute(self.data.train, config.seed + epoch, epoch))
            pending = []  # losses still on the device: reading one waits for its step
            for step in range(steps_per_epoch):
                pending.append(self.train_step(next(batches)))
                if len(pending) < SYNC_EVERY and step + 1 < steps_per_epoch:
                    continue
                values, pending = [float(nats) for nats in pending], []
                for i, nats in enumerate(values):
                    if not math.isfinite(nats):
                        failed = int(self.optimizer.iterations.numpy()) - len(values) + i + 1
                        raise TrainingError(
                            f"loss is {nats} at step {failed} (epoch {epoch}); stopped. Last "
                            f"good checkpoint: {self.manager.latest_checkpoint or 'none'}")
                total += sum(values)
                bar.update(step + 1, [
                    ("bpd", bits_per_dim(self.model, values[-1], self.global_batch)),
                    ("img/s", (step + 1) * self.global_batch / (time.time() - start))])
            seconds = time.time() - start
            train_bpd = bits_per_dim(self.model, total, steps_per_epoch * self.global_batch)
            images_per_s = steps_per_epoch * self.global_batch / seconds
            test_bpd = self.evaluate("test")
            self.epoch.assign(epoch + 1)
            self.log(f"epoch {epoch + 1}/{config.max_epochs}: train {train_bpd:.4f} bits/dim, "
                     f"test {test_bpd:.4f} bits/dim (EMA), {images_per_s:.1f} images/s, "
                     f"{seconds:.1f}s")
            step = int(self.optimizer.iterations.numpy())
            if writers:
                with writers["train"].as_default(step=step):
                    tf.summary.scalar("bits_per_dim", train_bpd)
                    tf.summary.scalar("learning_rate",
                                      float(self.optimizer.learning_rate.numpy()))
                    tf.summary.scalar("images_per_second", images_per_s)
                with writers["test"].as_default(step=step):
                    tf.summary.scalar("bits_per_dim", test_bpd)
            if (epoch + 1) % config.save_interval == 0 or epoch + 1 == config.max_epochs:
                self.save(writers, epoch + 1)
        return test_bpd

    def save(self, writers, epoch):
        """Checkpoint (atomic: TF renames complete files, then updates its index) and samples
        (none with num_samples=0)."""
        path = self.manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))
        self.log(f"saved {path}")
        if not self.config.num_samples:
            return
        images = self.sample(self.config.num_samples, self.config.seed)
        if self.chief:
            samples.write(self.save_dir, images, f"samples_epoch_{epoch:04d}")
            if writers and images.ndim == 4:  # images; code maps are written as .npy only
                with writers["test"].as_default(step=int(self.optimizer.iterations.numpy())):
                    tf.summary.image("samples", samples.image_grid(images)[None])

    def _summary_writers(self):
        if not self.chief:
            return None
        root = os.path.join(self.save_dir, "tensorboard")
        return {s: tf.summary.create_file_writer(os.path.join(root, s)) for s in ("train", "test")}


def _newest_step(save_dir):
    newest = runs.checkpoint_files(os.path.join(save_dir, runs.CHECKPOINTS))
    return int(newest[0].rsplit("-", 1)[-1]) if newest else 0


def _short(value):
    text = str(value)
    return text if len(text) < 80 else text[:77] + "..."
