"""Train, evaluate or sample PixelCNN++ / PixelSNAIL from the command line.

    python train.py --preset=demo                       # a few minutes on a CPU, no download
    python train.py --preset=cifar10 --save_dir=runs/c10  # the paper's run, all local GPUs
    python train.py --save_dir=runs/c10 --mode=eval     # test bits/dim with the EMA weights
    python train.py --save_dir=runs/c10 --mode=sample --num_samples=64 --seed=3
    python train.py --mode=eval --dataset=cifar10 --init_from_tf1_checkpoint=pxpp/params_cifar.ckpt

This file only parses flags and wires; the work is in pixel_cnn_pp/runtime/ (trainer.py, runs.py,
data.py) and the models in pixel_cnn_pp/model/ and pixel_snail/.
"""
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pixel_cnn_pp.errors import ConfigError, UserError  # noqa: E402
from pixel_cnn_pp.model import registry  # noqa: E402
from pixel_cnn_pp.model.autoregressive import PRECISIONS  # noqa: E402
from pixel_cnn_pp.runtime.config import TrainConfig, from_settings  # noqa: E402

PRESETS = registry.presets()
_D = TrainConfig()
F = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
flags.DEFINE_string("preset", None, f"Start from a named set-up: {', '.join(PRESETS)}.")
flags.DEFINE_enum("model", _D.model, registry.model_names(), "Model to train.")
flags.DEFINE_string("dataset", "digits",
                    "cifar10, imagenet32, mnist (tfds), digits (embedded), or folder.")
flags.DEFINE_string("data_dir", None, "Folder of images for --dataset=folder.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data dir (default: ~/tensorflow_datasets).")
flags.DEFINE_bool("binarize", False, "Threshold images to 0/255 (binarized MNIST).")
flags.DEFINE_string("save_dir", None, "Run folder: checkpoints, TensorBoard logs, samples, exports. "
                    "Default: runs/<preset or dataset>.")
# Model options: keyword arguments of the model class; unset, the model's own default.
flags.DEFINE_integer("nr_resnet", None, "Gated resnet blocks per stage (PixelCNN++ 5, PixelSNAIL 4).")
flags.DEFINE_integer("nr_filters", None, "Filters of every convolution (160 / 256).")
flags.DEFINE_integer("nr_logistic_mix", None, "Logistic mixture components (10).")
flags.DEFINE_enum("resnet_nonlinearity", None, ["concat_elu", "elu", "relu"],
                  "Nonlinearity of the gated resnets (concat_elu / elu).")
flags.DEFINE_float("dropout_p", None, "Dropout probability in the gated resnets (0.5).")
flags.DEFINE_integer("attn_rep", None, "PixelSNAIL: attention blocks (12).")
flags.DEFINE_integer("key_size", None, "PixelSNAIL: key and query width (16).")
flags.DEFINE_integer("mixin_size", None, "PixelSNAIL: value width (nr_filters / 2).")
flags.DEFINE_enum("output", None, ["logistic_mixture", "bernoulli"],
                  "PixelSNAIL: output distribution (bernoulli for binary images).")
flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                  "Compute dtype of the model (variables and the loss stay float32).")
MODEL_FLAGS = ("nr_resnet", "nr_filters", "nr_logistic_mix", "resnet_nonlinearity", "dropout_p",
               "attn_rep", "key_size", "mixin_size", "output")
# Training options: the fields of TrainConfig.
flags.DEFINE_bool("class_conditional", _D.class_conditional, "Condition on the class label.")
flags.DEFINE_integer("batch_size", _D.batch_size, "Images per replica per step.")
flags.DEFINE_integer("global_batch_size", 0,
                     "Images per step over all replicas (overrides --batch_size; must divide).")
flags.DEFINE_integer("init_batch_size", _D.init_batch_size, "Images for data-dependent init.")
flags.DEFINE_float("learning_rate", _D.learning_rate, "Base learning rate.")
flags.DEFINE_float("lr_decay", _D.lr_decay, "Learning rate factor applied before every step.")
flags.DEFINE_float("adam_epsilon", _D.adam_epsilon, "Adam epsilon (inside the square root).")
flags.DEFINE_float("polyak_decay", _D.polyak_decay, "EMA decay of the Polyak-averaged weights.")
flags.DEFINE_integer("max_epochs", _D.max_epochs, "Epochs to train (a rerun resumes).")
flags.DEFINE_integer("save_interval", _D.save_interval, "Epochs between checkpoints and samples.")
flags.DEFINE_integer("steps_per_epoch", _D.steps_per_epoch, "Cap on steps per epoch (0: all).")
flags.DEFINE_integer("num_samples", _D.num_samples,
                     "Images per sample grid at each checkpoint (0: none) / --mode=sample.")
flags.DEFINE_integer("seed", _D.seed, "Seed of the weights, dropout, data order and sampling.")
flags.DEFINE_bool("jit_compile", _D.jit_compile,
                  "Compile the forward + backward of a training step with XLA.")
flags.DEFINE_string("init_from_tf1_checkpoint", None,
                    "Checkpoint of the original TF1 code (prefix or folder): train from its "
                    "weights instead of data-dependent init, or --mode=eval/sample them. The "
                    "architecture flags are read from it.")
flags.DEFINE_enum("tf1_weights", "ema", ["ema", "raw"],
                  "Which weights of --init_from_tf1_checkpoint: Polyak (EMA) shadows or raw.")
# Running.
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
                  "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many replicas (testing).")
flags.DEFINE_enum("eval_split", "test", ["test", "train"], "Split for --mode=eval.")
flags.DEFINE_bool("allow_changed_hparams", False,
                  "Resume a run with settings that differ from its run.json (recorded there with "
                  "the step they changed at); without it such a resume is refused.")
flags.DEFINE_bool("export_at_end", True,
                  "After training, export the EMA weights as a SavedModel to <save_dir>/export.")


# Flags that are run settings (`config.from_settings`): a preset gives them, a flag wins.
SETTINGS = ("model", "dataset", "binarize", "mixed_precision", *MODEL_FLAGS, "class_conditional",
            "batch_size", "init_batch_size", "learning_rate", "lr_decay", "adam_epsilon",
            "polyak_decay", "max_epochs", "save_interval", "steps_per_epoch", "num_samples",
            "seed", "jit_compile")


def resolve_config():
    """(TrainConfig, dataset name, binarize, save dir, TF1 architecture or None) from the preset,
    overridden by every flag given on the command line; unset model options are the model's."""
    if F.preset and F.preset not in PRESETS:
        raise ConfigError(f"--preset={F.preset!r} is not one of {', '.join(PRESETS)}")
    for name in ("global_batch_size", "cpu_replicas"):
        if getattr(F, name) < 0:
            raise ConfigError(f"--{name}={getattr(F, name)} must be >= 0")
    settings = dict(PRESETS[F.preset]) if F.preset else {}
    settings.update({name: getattr(F, name) for name in SETTINGS
                     if F[name].present or (name not in MODEL_FLAGS and name not in settings)})
    tf1 = None
    if F.init_from_tf1_checkpoint:  # its architecture; a disagreeing setting is an error
        from pixel_cnn_pp.runtime import tf1_checkpoint
        tf1 = tf1_checkpoint.infer_hyperparameters(
            tf1_checkpoint.read(F.init_from_tf1_checkpoint))
        tf1_checkpoint.check_hyperparameters(
            tf1, {k: v for k, v in settings.items() if F[k].present or k in (
                PRESETS[F.preset] if F.preset else {})})
        architecture = dict(tf1["options"])
        if settings.get("resnet_nonlinearity") == "relu":  # shapes cannot tell relu from elu
            architecture["resnet_nonlinearity"] = "relu"
        settings.update(architecture, model=tf1["model"],
                        class_conditional=tf1["num_classes"] is not None)
    config, dataset, binarize = from_settings(
        settings, init_from_tf1_checkpoint=F.init_from_tf1_checkpoint or "",
        tf1_weights=F.tf1_weights)
    if F.mode == "sample" and config.num_samples < 1:
        raise ConfigError(f"--num_samples={config.num_samples} must be >= 1 with --mode=sample")
    save_dir = F.save_dir or os.path.join("runs", F.preset or dataset)
    return config, dataset, binarize, save_dir, tf1


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    try:
        run()
    except UserError as e:  # bad flags, files, data, checkpoints: one line; bugs: a traceback
        sys.exit(f"train.py: error: {e}")


def run():
    config, dataset_name, binarize, save_dir, tf1 = resolve_config()
    import keras

    from pixel_cnn_pp.errors import CheckpointError
    from pixel_cnn_pp.runtime import atomic, data, distribute, runs, samples, trainer
    if F.mode != "eval":  # training and sampling write into it
        atomic.check_writable_dir(save_dir, "save_dir", CheckpointError)
    devices = distribute.split_cpu(F.cpu_replicas) if F.cpu_replicas else None
    strategy = distribute.make_strategy(F.strategy, devices)
    replicas = strategy.num_replicas_in_sync
    if F.global_batch_size:
        if F.global_batch_size % replicas:
            raise ConfigError(f"--global_batch_size={F.global_batch_size} cannot be split "
                              f"evenly over {replicas} replicas")
        config.batch_size = F.global_batch_size // replicas
    keras.utils.set_random_seed(config.seed)  # weights, dropout: a rerun is identical

    if F.mode != "train" and not tf1:  # the run in save_dir: its model and dataset
        metadata = runs.read_run(save_dir)
        dataset_name, binarize = metadata["dataset"], metadata["binarize"]
    dataset = data.load(dataset_name, F.data_dir, F.tfds_data_dir, binarize)
    if tf1 and tf1["image_channels"] != dataset.image_shape[-1]:
        raise ConfigError(f"{F.init_from_tf1_checkpoint!r} models {tf1['image_channels']}-channel "
                          f"images; --dataset={dataset.name} has shape {dataset.image_shape}")

    if F.mode == "train":
        run_trainer = trainer.Trainer(config, dataset, strategy, save_dir)
        print(f"{config.model} on {dataset.name} {dataset.image_shape}: "
              f"{run_trainer.model.count_params():,} parameters, {replicas} replica(s), "
              f"global batch {run_trainer.global_batch}, save dir {save_dir}", flush=True)
        run_trainer.train(allow_changes=F.allow_changed_hparams)
        if F.export_at_end and run_trainer.chief:
            from pixel_cnn_pp.runtime.export import export_run
            path = export_run(save_dir, skip_if_current=True)
            print(f"SavedModel (TF Serving) of the EMA weights: {path}")
        return

    if tf1:
        from pixel_cnn_pp.runtime import tf1_checkpoint
        with strategy.scope():
            model = tf1_checkpoint.load_model(config.init_from_tf1_checkpoint,
                                              dataset.image_shape[:2], config.tf1_weights,
                                              config.model_options["resnet_nonlinearity"])
        source = f"{config.tf1_weights} weights of {F.init_from_tf1_checkpoint}"
    else:
        loaded = runs.load_run(save_dir, weights="ema", strategy=strategy)
        model, source = loaded.model, f"EMA weights of {loaded.checkpoint_path}"
    if model.num_classes and model.num_classes != dataset.num_classes:
        raise ConfigError(f"the model has {model.num_classes} classes; --dataset={dataset.name} "
                          f"has {dataset.num_classes}")
    if F.mode == "eval":
        trainer.check_data_fits(model, dataset, config.batch_size * replicas)
        split = dataset.test if F.eval_split == "test" else dataset.train
        bpd = trainer.evaluate(model, split, strategy, config.batch_size * replicas,
                               F.eval_split)
        print(f"{F.eval_split} bits/dim ({source}): {bpd:.5f}")
    else:
        images = model.sample(config.num_samples, config.seed,
                              trainer.sample_labels(model, config.num_samples))
        path = samples.write(save_dir, images, f"samples_seed_{config.seed}")
        print(f"wrote {len(images)} samples to {path} and .npy")


if __name__ == "__main__":
    app.run(main)
