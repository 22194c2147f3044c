"""The training loop shared by every model: data-dependent init, the original's Adam and Polyak
averaging under any tf.distribute strategy, resumable checkpoints, TensorBoard, sample grids.

Semantics follow the original `train.py` (pixel_cnn_pp.md section 10): the loss of each replica
is the summed nats of its batch and the replicas' gradients are summed, so an update does not
depend on how a global batch is split; the EMA weights are used for test bits/dim and sampling.
"""
import dataclasses
import importlib
import math
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from pixel_cnn_pp import data as data_lib
from pixel_cnn_pp import files
from pixel_cnn_pp.autoregressive import images_to_float
from pixel_cnn_pp.graph_sampler import sample_images
from pixel_cnn_pp.model import PixelCNNpp
from pixel_cnn_pp.optim import OriginalAdam, PolyakAverage

RUN_FILE = "run.json"
PRECISIONS = ("float32", "mixed_bfloat16")


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, mismatched save dir); the message says why."""


@dataclasses.dataclass
class TrainConfig:
    """Hyper-parameters of a run; defaults are the original PixelCNN++ train.py's."""
    model: str = "pixel_cnn_pp"
    nr_resnet: int = 5
    nr_filters: int = 160
    nr_logistic_mix: int = 10
    resnet_nonlinearity: str = "concat_elu"
    dropout_p: float = 0.5
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
    num_samples: int = 16
    seed: int = 1
    jit_compile: bool = False  # XLA for the forward + backward of a training step
    mixed_precision: str = "float32"  # or "mixed_bfloat16" (Keras dtype policy of the model)
    init_from_tf1_checkpoint: str = ""  # start from an original TF1 checkpoint instead of DDI
    tf1_weights: str = "ema"  # its Polyak shadows ("ema") or raw weights ("raw")
    extra: dict = dataclasses.field(default_factory=dict)  # model-specific options


# name -> builder(config, image_shape, num_classes) -> AutoregressiveModel
MODELS = {}
# Models of other packages, imported on first use; importing registers them.
MODEL_PACKAGES = {"pixel_snail": "pixel_snail.training"}


def register_model(name, builder):
    MODELS[name] = builder


def get_builder(name):
    if name not in MODELS and name in MODEL_PACKAGES:
        importlib.import_module(MODEL_PACKAGES[name])
    if name not in MODELS:
        raise TrainingError(f"--model={name!r} is not one of {sorted(set(MODELS) | set(MODEL_PACKAGES))}")
    return MODELS[name]


def _build_pixel_cnn_pp(config, image_shape, num_classes):
    return PixelCNNpp(image_shape=image_shape, nr_resnet=config.nr_resnet,
                      nr_filters=config.nr_filters, nr_logistic_mix=config.nr_logistic_mix,
                      resnet_nonlinearity=config.resnet_nonlinearity,
                      dropout_p=config.dropout_p, num_classes=num_classes, name=config.model)


register_model("pixel_cnn_pp", _build_pixel_cnn_pp)


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


class Trainer:
    """Owns the model, its EMA, the optimiser and the save dir of one run."""

    def __init__(self, config, dataset, strategy, save_dir, log=print):
        self.config = config
        self.data = dataset
        self.strategy = strategy
        self.save_dir = save_dir
        self.log = log
        self.chief = is_chief(strategy)
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = config.batch_size * self.replicas
        if self.global_batch > dataset.train_size:
            raise TrainingError(f"--batch_size={config.batch_size} x {self.replicas} replicas "
                                f"exceeds the {dataset.train_size} training images")
        num_classes = dataset.num_classes if config.class_conditional else None
        if config.class_conditional and not dataset.num_classes:
            raise TrainingError(f"--class_conditional: dataset {dataset.name!r} has no labels")
        builder = get_builder(config.model)
        if config.mixed_precision not in PRECISIONS:
            raise TrainingError(f"--mixed_precision={config.mixed_precision!r} is not one of "
                                f"{PRECISIONS}")
        keras.utils.set_random_seed(config.seed)  # weights, dropout: a rerun is identical
        policy = keras.mixed_precision.global_policy()
        # Layers take the policy when they are created: variables stay float32, bfloat16 needs
        # no loss scaling, and the loss is computed in float32 (`AutoregressiveModel.nll`).
        keras.mixed_precision.set_global_policy(config.mixed_precision)
        try:
            with strategy.scope():
                self.model = builder(config, dataset.image_shape, num_classes)
                self.model.build_all()
        finally:
            keras.mixed_precision.set_global_policy(policy)
        with strategy.scope():
            # Shadows before DDI, as the original (their g and b start at 1 and 0).
            self.ema = PolyakAverage(self.model.trainable_variables, config.polyak_decay)
            self.optimizer = OriginalAdam(config.learning_rate, lr_decay=config.lr_decay,
                                          epsilon=config.adam_epsilon)
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # The model's non-trainable variables are its dropout RNG states: tf.train.Checkpoint
        # does not reach them through the Keras model, and a resumed run needs them to match.
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              ema=self.ema.shadows, epoch=self.epoch,
                                              rng=self.model.non_trainable_variables)
        ckpt_dir = os.path.join(save_dir, "checkpoints")
        if not self.chief:  # every worker must write; only the chief's copy is kept
            ckpt_dir = tempfile.mkdtemp(prefix="pixelcnn_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=3)
        self._loss_and_grads = tf.function(self._replica_loss_and_grads, jit_compile=True) \
            if config.jit_compile else self._replica_loss_and_grads
        self._train_step = tf.function(self._distributed_train_step)
        self._eval_step = tf.function(self._distributed_eval_step)
        self._sample = tf.function(lambda n, seed, labels: sample_images(self.model, n, seed, labels))

    # -- run metadata -----------------------------------------------------------------------

    def run_metadata(self):
        return {"model": self.config.model,
                "model_config": keras.saving.serialize_keras_object(self.model),
                "dataset": self.data.name,
                "binarize": self.data.binarized,
                "image_shape": list(self.data.image_shape),
                "num_classes": self.model.num_classes,
                "train_config": dataclasses.asdict(self.config)}

    def check_save_dir(self):
        """Refuse a save dir that holds a different model; write run.json for a new one."""
        path = os.path.join(self.save_dir, RUN_FILE)
        new = self.run_metadata()
        if tf.io.gfile.exists(path):
            old = files.read_json(path)
            for key in ("model", "model_config", "image_shape", "num_classes"):
                if old.get(key) != new[key]:
                    raise TrainingError(
                        f"--save_dir={self.save_dir!r} holds a run with a different {key} "
                        f"({_short(old.get(key))} vs {_short(new[key])}); use another save_dir")
        elif self.chief:
            tf.io.gfile.makedirs(self.save_dir)
            files.write_json(path, new)

    # -- init and restore -------------------------------------------------------------------

    def restore_or_initialize(self):
        """Resume from the latest checkpoint, or run data-dependent init on a fresh run."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            self.log(f"resumed from {latest}: step {int(self.optimizer.iterations.numpy())}, "
                     f"epoch {int(self.epoch.numpy())}")
            return True
        if self.config.init_from_tf1_checkpoint:
            self.load_tf1()
            return False
        images, labels = next(iter(data_lib.batches(
            self.data.train, self.config.init_batch_size, self.config.seed, self.data.train_size)))
        with self.strategy.scope():  # cross-replica: every replica gets the same g and b
            self.model.initialize(images.numpy(), class_label=self._labels(labels.numpy()))
        self.log(f"data-dependent init on {self.config.init_batch_size} training images")
        return False

    def load_tf1(self):
        """Weights of the original TF1 checkpoint `config.init_from_tf1_checkpoint` (its EMA
        shadows, or raw weights with tf1_weights="raw"); the Polyak average restarts from them.
        Returns a description for logs."""
        from pixel_cnn_pp import tf1_checkpoint
        ckpt = tf1_checkpoint.read(self.config.init_from_tf1_checkpoint)
        inferred = tf1_checkpoint.infer_hyperparameters(ckpt)
        if inferred["image_channels"] != self.data.image_shape[-1]:
            raise TrainingError(f"{ckpt.path!r} models {inferred['image_channels']}-channel "
                                f"images; --dataset={self.data.name} has shape "
                                f"{self.data.image_shape}")
        if inferred["num_classes"] != self.model.num_classes:
            raise TrainingError(f"{ckpt.path!r} has num_classes={inferred['num_classes']}; the "
                                f"model built for --dataset={self.data.name} has "
                                f"{self.model.num_classes}")
        tf1_checkpoint.assign(self.model, ckpt, self.config.tf1_weights)
        self.ema.reset()
        source = f"{self.config.tf1_weights} weights of TF1 checkpoint {ckpt.path}"
        self.log(f"loaded the {source}")
        return source

    def restore_latest(self):
        latest = self.manager.latest_checkpoint
        if not latest:
            raise TrainingError(f"no checkpoint in {os.path.join(self.save_dir, 'checkpoints')!r}; "
                                "train first (--mode=train)")
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def _labels(self, labels):
        return labels if self.model.num_classes else None

    # -- steps ------------------------------------------------------------------------------

    def _replica_loss_and_grads(self, images, labels):
        x = images_to_float(images)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(self.model.nll(x, self._labels(labels), training=True))
        return loss, tape.gradient(loss, self.model.trainable_variables)

    def _replica_train_step(self, images, labels):
        loss, grads = self._loss_and_grads(images, labels)
        self.optimizer.apply(grads, self.model.trainable_variables)  # sums replicas' grads
        return loss

    def _distributed_train_step(self, batch):
        losses = self.strategy.run(self._replica_train_step, args=batch)
        self.ema.update()  # cross-replica: one assign reaches every copy
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def _distributed_eval_step(self, batch):
        def replica(images, labels):
            return tf.reduce_sum(self.model.nll(images_to_float(images), self._labels(labels)))
        losses = self.strategy.run(replica, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def bits_per_dim(self, nats, num_images):
        """The original's normalisation: nats / (ln 2 * H*W*C * images)."""
        return nats / (math.log(2.0) * self.model.num_dims * num_images)

    # -- loops ------------------------------------------------------------------------------

    def _distributed(self, dataset, seed):
        size = None if seed is None else self.data.train_size
        return self.strategy.experimental_distribute_dataset(
            data_lib.batches(dataset, self.global_batch, seed, size))

    def evaluate(self, split="test"):
        """Bits/dim of a split with the EMA weights, dropout off (last partial batch dropped)."""
        dataset = self.data.test if split == "test" else self.data.train
        total, count = 0.0, 0
        with self.ema.averaged():
            for batch in self._distributed(dataset, None):
                total += float(self._eval_step(batch))
                count += self.global_batch
        if count == 0:
            raise TrainingError(f"the {split} split has fewer images than one global batch "
                                f"({self.global_batch})")
        return self.bits_per_dim(total, count)

    def sample(self, num_samples, seed):
        """uint8 samples with the EMA weights; class-conditional models cycle through labels.
        The cached sampler where the model has one, else the naive one as a single graph."""
        labels = (np.arange(num_samples) % self.model.num_classes).astype(np.int32) \
            if self.model.num_classes else None
        with self.ema.averaged():
            if hasattr(self.model, "call_row"):
                return self.model.sample(num_samples, seed, labels, method="fast")
            return self._sample(tf.constant(num_samples), tf.constant(seed, tf.int64),
                                labels).numpy()

    def train(self):
        """Train to `max_epochs`, resuming if the save dir holds a checkpoint. Returns the last
        test bits/dim."""
        config = self.config
        self.check_save_dir()
        self.restore_or_initialize()
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
            batches = iter(self._distributed(self.data.train, config.seed + epoch))
            for step in range(steps_per_epoch):
                nats = float(self._train_step(next(batches)))
                if not math.isfinite(nats):
                    raise TrainingError(
                        f"loss is {nats} at step {int(self.optimizer.iterations.numpy())} "
                        f"(epoch {epoch}); stopped. Last good checkpoint: "
                        f"{self.manager.latest_checkpoint or 'none'}")
                total += nats
                bar.update(step + 1, [("bpd", self.bits_per_dim(nats, self.global_batch)),
                                      ("img/s", (step + 1) * self.global_batch
                                       / (time.time() - start))])
            seconds = time.time() - start
            train_bpd = self.bits_per_dim(total, steps_per_epoch * self.global_batch)
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
        """Checkpoint (atomic: TF renames complete files, then updates its index) and samples."""
        path = self.manager.save(checkpoint_number=int(self.optimizer.iterations.numpy()))
        self.log(f"saved {path}")
        samples = self.sample(self.config.num_samples, self.config.seed)
        if self.chief:
            self.write_samples(samples, f"samples_epoch_{epoch:04d}")
            if writers:
                with writers["test"].as_default(step=int(self.optimizer.iterations.numpy())):
                    tf.summary.image("samples", files.image_grid(samples)[None])

    def write_samples(self, samples, stem):
        folder = os.path.join(self.save_dir, "samples")
        tf.io.gfile.makedirs(folder)
        files.save_png(os.path.join(folder, stem + ".png"), files.image_grid(samples))
        files.save_npy(os.path.join(folder, stem + ".npy"), samples)
        return os.path.join(folder, stem + ".png")

    def _summary_writers(self):
        if not self.chief:
            return None
        root = os.path.join(self.save_dir, "tensorboard")
        return {s: tf.summary.create_file_writer(os.path.join(root, s)) for s in ("train", "test")}


def _short(value):
    text = str(value)
    return text if len(text) < 80 else text[:77] + "..."
