"""Train, evaluate or sample PixelCNN++ / PixelSNAIL from the command line.

    python train.py --preset=demo                       # a few minutes on a CPU, no download
    python train.py --preset=cifar10 --save_dir=runs/c10  # the paper's run, all local GPUs
    python train.py --save_dir=runs/c10 --mode=eval     # test bits/dim with the EMA weights
    python train.py --save_dir=runs/c10 --mode=sample --num_samples=64 --seed=3
    python train.py --mode=eval --dataset=cifar10 --tf1_checkpoint=pxpp/params_cifar.ckpt
    python train.py --preset=demo --save_dir=runs/bg --mutation_rate=0.2 --l2_weight=1e-4
    python train.py --save_dir=runs/demo --mode=score --background_dir=runs/bg --ood_dataset=noise
    python train.py --save_dir=runs/demo --mode=complete --known_rows=4

This file only parses flags and dispatches; the modes are pixel_cnn_pp/runtime/commands.py, the
models are in pixel_cnn_pp/model/ and pixel_snail/.
"""
import functools
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pixel_cnn_pp.runtime import cli, hardware  # noqa: E402

hardware.set_onednn_default()  # before anything imports TensorFlow, which reads it when it starts

from pixel_cnn_pp.errors import ConfigError, UserError  # noqa: E402
from pixel_cnn_pp.model import registry  # noqa: E402
from pixel_cnn_pp.model.autoregressive import PRECISIONS  # noqa: E402
from pixel_cnn_pp.runtime.config import TrainConfig, from_settings  # noqa: E402

PRESETS = registry.presets()
_D = TrainConfig()
F = flags.FLAGS
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "score", "complete"],
                  "What to do: train; eval (test bits/dim); sample (a grid); score (CSV of "
                  "likelihoods, OOD metrics); complete (the bottom rows of test images).")
flags.DEFINE_string("preset", None, f"Start from a named set-up: {', '.join(PRESETS)}.")
flags.DEFINE_enum("model", _D.model, registry.model_names(), "Model to train.")
flags.DEFINE_string("dataset", "digits",
                    "cifar10, imagenet32, mnist (tfds), digits (embedded), folder, or codes "
                    "(code maps of an .npz file: a prior over discrete codes).")
flags.DEFINE_string("data_dir", None, "Folder of images for --dataset=folder.")
flags.DEFINE_string("data_path", None, "--dataset=codes: .npz file with train_codes and "
                    "test_codes (N, H, W) ints [, *_condition, *_labels].")
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
flags.DEFINE_enum("output", None, ["logistic_mixture", "bernoulli", "categorical"],
                  "Output distribution: bernoulli (PixelSNAIL, binary images); categorical "
                  "(code maps, set by --dataset=codes).")
flags.DEFINE_integer("num_codes", None, "--dataset=codes: codebook size K (default: the "
                     "file's num_codes, else its largest code + 1).")
flags.DEFINE_bool("remat", None, "Recompute each gated resnet's activations in the backward "
                  "pass instead of keeping them: less memory (larger images, batches), about "
                  "one more forward pass of time.")
flags.DEFINE_enum("mixed_precision", "float32", list(PRECISIONS),
                  "Compute dtype of the model (variables and the loss stay float32).")
MODEL_FLAGS = ("nr_resnet", "nr_filters", "nr_logistic_mix", "resnet_nonlinearity", "dropout_p",
               "attn_rep", "key_size", "mixin_size", "output", "num_codes", "remat")
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
flags.DEFINE_float("mutation_rate", _D.mutation_rate,
                   "Background model for likelihood ratios: probability that each training "
                   "sub-pixel is replaced by a random level (Ren et al. use 0.1-0.3).")
flags.DEFINE_float("l2_weight", _D.l2_weight,
                   "Background model: L2 penalty on the applied weights, per image (0: none).")
flags.DEFINE_string("tf1_checkpoint", None,
                    "Checkpoint of the original TF1 code (prefix or folder): train from its "
                    "weights instead of data-dependent init, or --mode=eval/sample them. The "
                    "architecture flags are read from it.")
OLD_SPELLINGS = [cli.define_old_spelling("init_from_tf1_checkpoint", "tf1_checkpoint")]
flags.DEFINE_enum("tf1_weights", "ema", ["ema", "raw"],
                  "Which weights of --tf1_checkpoint: Polyak (EMA) shadows or raw.")
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
# Scoring and completion.
flags.DEFINE_string("background_dir", None,
                    "--mode=score: run folder of a background model (trained with "
                    "--mutation_rate) for likelihood ratios.")
flags.DEFINE_string("ood_dataset", None,
                    "--mode=score: out-of-distribution set to detect: a --dataset name (its "
                    "test split), inverted (255 - the test images) or noise (uniform images).")
flags.DEFINE_string("ood_data_dir", None, "Folder of images for --ood_dataset=folder.")
flags.DEFINE_integer("known_rows", -1,
                     "--mode=complete: rows of each test image given (-1: the top half).")
flags.DEFINE_integer("completions", 3, "--mode=complete: completions per image.")


# Flags that are run settings (`config.from_settings`): a preset gives them, a flag wins.
SETTINGS = ("model", "dataset", "binarize", "mixed_precision", *MODEL_FLAGS, "class_conditional",
            "batch_size", "init_batch_size", "learning_rate", "lr_decay", "adam_epsilon",
            "polyak_decay", "max_epochs", "save_interval", "steps_per_epoch", "num_samples",
            "seed", "jit_compile", "mutation_rate", "l2_weight")


def resolve_config():
    """(TrainConfig, commands.Options, the TF1 checkpoint read or None) from the preset,
    overridden by every flag given on the command line; unset model options are the model's."""
    from pixel_cnn_pp.runtime import commands
    if F.preset and F.preset not in PRESETS:
        raise ConfigError(f"--preset={F.preset!r} is not one of {', '.join(PRESETS)}")
    preset = PRESETS[F.preset] if F.preset else {}
    settings = dict(preset)
    settings.update({name: getattr(F, name) for name in SETTINGS
                     if F[name].present or (name not in MODEL_FLAGS and name not in settings)})
    tf1 = None
    if F.tf1_checkpoint:  # its architecture; a disagreeing setting is an error
        from pixel_cnn_pp.runtime import tf1_checkpoint
        tf1 = tf1_checkpoint.read(F.tf1_checkpoint)
        given = {k: v for k, v in settings.items() if F[k].present or k in preset}
        settings = tf1_checkpoint.with_architecture(
            settings, tf1_checkpoint.infer_hyperparameters(tf1), given)
    config, dataset, binarize = from_settings(
        settings, tf1_checkpoint=F.tf1_checkpoint or "", tf1_weights=F.tf1_weights)
    options = commands.Options(
        mode=F.mode, save_dir=F.save_dir or os.path.join("runs", F.preset or dataset),
        dataset=dataset, binarize=binarize, data_dir=F.data_dir, data_path=F.data_path,
        tfds_data_dir=F.tfds_data_dir,
        strategy=F.strategy, cpu_replicas=F.cpu_replicas, global_batch_size=F.global_batch_size,
        eval_split=F.eval_split, allow_changed_hparams=F.allow_changed_hparams,
        export_at_end=F.export_at_end, background_dir=F.background_dir,
        ood_dataset=F.ood_dataset, ood_data_dir=F.ood_data_dir, known_rows=F.known_rows,
        completions=F.completions)
    return config, options, tf1


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    try:
        cli.apply_old_spellings("train.py", OLD_SPELLINGS)
        config, options, tf1 = resolve_config()
        hardware.choose_filter_gradient()
        from pixel_cnn_pp.runtime import commands
        commands.run(config, options, tf1, log=functools.partial(print, flush=True))
    except UserError as e:  # bad flags, files, data, checkpoints: one line; bugs: a traceback
        sys.exit(f"train.py: error: {e}")


if __name__ == "__main__":
    app.run(main)
