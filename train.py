"""Train, evaluate or sample PixelCNN++ / PixelSNAIL from the command line.

    python train.py --preset=demo                       # a few minutes on a CPU, no download
    python train.py --preset=cifar10 --save_dir=runs/c10  # the paper's run, all local GPUs
    python train.py --save_dir=runs/c10 --mode=eval     # test bits/dim with the EMA weights
    python train.py --save_dir=runs/c10 --mode=sample --num_samples=64 --seed=3
    python train.py --mode=eval --dataset=cifar10 --init_from_tf1_checkpoint=pxpp/params_cifar.ckpt

This file only parses flags and wires; the work is in pixel_cnn_pp/ (training.py, data.py).
"""
import dataclasses
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pixel_cnn_pp.presets import PRESETS  # noqa: E402
from pixel_cnn_pp.training import TrainConfig  # noqa: E402
from pixel_snail import training as snail  # noqa: E402 - also registers the model
PRESETS = {**PRESETS, **snail.PRESETS}

_D = TrainConfig()
F = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to do.")
flags.DEFINE_string("preset", None, f"Start from a named set-up: {', '.join(PRESETS)}.")
flags.DEFINE_enum("model", _D.model, ["pixel_cnn_pp", "pixel_snail"], "Model to train.")
flags.DEFINE_string("dataset", "digits",
                    "cifar10, imagenet32, mnist (tfds), digits (embedded), or folder.")
flags.DEFINE_string("data_dir", None, "Folder of images for --dataset=folder.")
flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data dir (default: ~/tensorflow_datasets).")
flags.DEFINE_bool("binarize", False, "Threshold images to 0/255 (binarized MNIST).")
flags.DEFINE_string("save_dir", None, "Run folder: checkpoints, TensorBoard logs, samples, exports. "
                    "Default: runs/<preset or dataset>.")
flags.DEFINE_integer("nr_resnet", _D.nr_resnet, "Gated resnet blocks per stage.")
flags.DEFINE_integer("nr_filters", _D.nr_filters, "Filters of every convolution.")
flags.DEFINE_integer("nr_logistic_mix", _D.nr_logistic_mix, "Logistic mixture components.")
flags.DEFINE_enum("resnet_nonlinearity", _D.resnet_nonlinearity, ["concat_elu", "elu", "relu"],
                  "Nonlinearity of the gated resnets.")
flags.DEFINE_float("dropout_p", _D.dropout_p, "Dropout probability in the gated resnets.")
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
flags.DEFINE_integer("num_samples", _D.num_samples, "Images per sample grid / --mode=sample.")
flags.DEFINE_integer("seed", _D.seed, "Seed of init, data order and sampling.")
flags.DEFINE_enum("strategy", "mirrored", ["mirrored", "one_device", "multi_worker"],
                  "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many replicas (testing).")
flags.DEFINE_integer("attn_rep", 12, "PixelSNAIL: attention blocks.")
flags.DEFINE_enum("output", "logistic_mixture", ["logistic_mixture", "bernoulli"],
                  "PixelSNAIL: output distribution (bernoulli for binary images).")
flags.DEFINE_enum("eval_split", "test", ["test", "train"], "Split for --mode=eval.")
flags.DEFINE_bool("jit_compile", _D.jit_compile,
                  "Compile the forward + backward of a training step with XLA.")
flags.DEFINE_enum("mixed_precision", _D.mixed_precision, ["float32", "mixed_bfloat16"],
                  "Compute dtype of the model (variables and the loss stay float32).")
flags.DEFINE_string("init_from_tf1_checkpoint", None,
                    "Checkpoint of the original TF1 code (prefix or folder): train from its "
                    "weights instead of data-dependent init, or --mode=eval/sample them. The "
                    "architecture flags are read from it.")
flags.DEFINE_enum("tf1_weights", "ema", ["ema", "raw"],
                  "Which weights of --init_from_tf1_checkpoint: Polyak (EMA) shadows or raw.")
flags.DEFINE_bool("export_at_end", True,
                  "After training, export the EMA weights as a SavedModel to <save_dir>/export.")

POSITIVE = ("nr_resnet", "nr_filters", "nr_logistic_mix", "batch_size", "init_batch_size",
            "max_epochs", "save_interval", "num_samples")


def resolve_config():
    """TrainConfig from the preset, overridden by every flag given on the command line."""
    preset = PRESETS.get(F.preset, {}) if F.preset else {}
    if F.preset and F.preset not in PRESETS:
        raise ValueError(f"--preset={F.preset!r} is not one of {', '.join(PRESETS)}")

    def value(name):
        return getattr(F, name) if F[name].present or name not in preset else preset[name]

    for name in POSITIVE + ("steps_per_epoch", "global_batch_size", "cpu_replicas"):
        minimum = 1 if name in POSITIVE else 0
        if value(name) < minimum:
            raise ValueError(f"--{name}={value(name)} must be >= {minimum}")
    for name in ("dropout_p", "polyak_decay"):
        if not 0.0 <= value(name) < 1.0:
            raise ValueError(f"--{name}={value(name)} must be in [0, 1)")
    if not 0.0 < value("lr_decay") <= 1.0:
        raise ValueError(f"--lr_decay={value('lr_decay')} must be in (0, 1]")
    if value("learning_rate") <= 0:
        raise ValueError(f"--learning_rate={value('learning_rate')} must be positive")
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra", "tf1_weights",
                                                                  "init_from_tf1_checkpoint"}
    config = TrainConfig(**{name: value(name) for name in fields})
    if F.init_from_tf1_checkpoint:
        config = _architecture_from_tf1(config, preset)
    elif config.model == "pixel_snail":  # its own options; preset values unless flags are given
        config.extra = dict(preset.get("extra", {}))
        config.extra.update({name: getattr(F, name) for name in ("attn_rep", "output")
                             if F[name].present or name not in config.extra})
    save_dir = F.save_dir or os.path.join("runs", F.preset or value("dataset"))
    return config, value("dataset"), value("binarize"), save_dir


def _architecture_from_tf1(config, preset):
    """The architecture of --init_from_tf1_checkpoint; flags or preset values that disagree
    with it are an error (never silently overridden)."""
    from pixel_cnn_pp import tf1_checkpoint
    inferred = tf1_checkpoint.infer_hyperparameters(
        tf1_checkpoint.read(F.init_from_tf1_checkpoint))
    given = {name: getattr(F, name) for name in list(F) if F[name].present}
    given.update({k: v for k, v in {**preset, **preset.get("extra", {})}.items()
                  if k not in given})
    tf1_checkpoint.check_hyperparameters(inferred, given)
    for name in ("model", "nr_resnet", "nr_filters", "nr_logistic_mix", "class_conditional"):
        setattr(config, name, inferred[name])
    if not (inferred["resnet_nonlinearity"] == "elu" and "resnet_nonlinearity" in given):
        config.resnet_nonlinearity = inferred["resnet_nonlinearity"]
    config.extra = dict(inferred["extra"])
    config.init_from_tf1_checkpoint = F.init_from_tf1_checkpoint
    config.tf1_weights = F.tf1_weights
    return config


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    try:
        run()
    except Exception as e:  # noqa: BLE001 - user errors get one line, bugs a traceback
        from pixel_cnn_pp.data import DataError
        from pixel_cnn_pp.training import TrainingError
        if isinstance(e, (ValueError, DataError, TrainingError)):  # ExportError too
            sys.exit(f"train.py: error: {e}")
        raise


def run():
    config, dataset_name, binarize, save_dir = resolve_config()
    from pixel_cnn_pp import distribute
    devices = distribute.split_cpu(F.cpu_replicas) if F.cpu_replicas else None
    strategy = distribute.make_strategy(F.strategy, devices)
    if F.global_batch_size:
        replicas = strategy.num_replicas_in_sync
        if F.global_batch_size % replicas:
            raise ValueError(f"--global_batch_size={F.global_batch_size} cannot be split "
                             f"evenly over {replicas} replicas")
        config.batch_size = F.global_batch_size // replicas

    from pixel_cnn_pp import data, files, training
    if F.mode != "train" and not config.init_from_tf1_checkpoint:  # the run's model
        run_file = os.path.join(save_dir, training.RUN_FILE)
        if not os.path.exists(run_file):
            raise ValueError(f"--save_dir={save_dir!r} holds no run ({training.RUN_FILE}); "
                             "train first")
        saved = files.read_json(run_file)
        keep = {"num_samples": config.num_samples, "seed": config.seed,
                "batch_size": config.batch_size}
        config = TrainConfig(**saved["train_config"])
        config.__dict__.update(keep)
        dataset_name, binarize = saved["dataset"], saved.get("binarize", False)
    dataset = data.load(dataset_name, F.data_dir, F.tfds_data_dir, binarize)
    trainer = training.Trainer(config, dataset, strategy, save_dir)
    print(f"{config.model} on {dataset.name} {dataset.image_shape}: "
          f"{trainer.model.count_params():,} parameters, {trainer.replicas} replica(s), "
          f"global batch {trainer.global_batch}, save dir {save_dir}", flush=True)
    if F.mode == "train":
        trainer.train()
        if F.export_at_end and trainer.chief:
            from pixel_cnn_pp.export import export_run
            path = export_run(save_dir, skip_if_current=True)
            print(f"SavedModel (TF Serving) of the EMA weights: {path}")
        return
    if config.init_from_tf1_checkpoint:
        source = trainer.load_tf1()
    else:
        source = f"EMA weights of {trainer.restore_latest()}"
    if F.mode == "eval":
        bpd = trainer.evaluate(F.eval_split)
        print(f"{F.eval_split} bits/dim ({source}): {bpd:.5f}")
    else:
        samples = trainer.sample(config.num_samples, config.seed)
        path = trainer.write_samples(samples, f"samples_seed_{config.seed}")
        print(f"wrote {len(samples)} samples to {path} and .npy")


if __name__ == "__main__":
    app.run(main)
