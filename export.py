"""Export a trained run as a versioned SavedModel for TF Serving.

    python export.py --checkpoint_dir=runs/demo --export_dir=runs/demo/export
    python export.py --checkpoint_dir=runs/demo --export_dir=/models/pixelcnn --version=3 --overwrite
    python export.py --from_tf1_checkpoint=pxpp/params_cifar.ckpt --export_dir=/models/pxpp

Writes the Polyak-averaged (EMA) weights of the latest checkpoint, or of a checkpoint of the
original TF1 code, to <export_dir>/<version>/.
This file only parses flags; the work is in pixel_cnn_pp/runtime/export.py.
"""
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("checkpoint_dir", None, "Save dir of a training run (train.py --save_dir).")
flags.DEFINE_string("export_dir", None, "Folder of versions (default: <checkpoint_dir>/export).")
flags.DEFINE_integer("version", None, "Version number (default: the next free integer).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_string("from_tf1_checkpoint", None,
                    "Export a checkpoint of the original TF1 code (prefix or folder) instead of "
                    "a training run; the architecture is read from it.")
flags.DEFINE_enum("tf1_weights", "ema", ["ema", "raw"],
                  "Weights of --from_tf1_checkpoint: Polyak (EMA) shadows or raw.")
flags.DEFINE_integer("max_samples", 256,
                     "Most images one request of the `sample` signature may ask for (bounds the "
                     "memory and time of a request; recorded in metadata.json).")
flags.DEFINE_integer("image_size", 32, "Height and width of the images of --from_tf1_checkpoint.")
flags.DEFINE_enum("resnet_nonlinearity", None, ["elu", "relu"],
                  "For --from_tf1_checkpoint: relu if the original ran with it (its shapes "
                  "cannot tell relu from elu).")
F = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    from pixel_cnn_pp.errors import UserError
    from pixel_cnn_pp.runtime.export import describe, export_run, export_tf1_checkpoint
    if bool(F.checkpoint_dir) == bool(F.from_tf1_checkpoint):
        sys.exit("export.py: error: give exactly one of --checkpoint_dir, --from_tf1_checkpoint")
    if F.from_tf1_checkpoint and not F.export_dir:
        sys.exit("export.py: error: --export_dir is required with --from_tf1_checkpoint")
    if F.image_size <= 0:
        sys.exit(f"export.py: error: --image_size={F.image_size} must be positive")
    try:
        if F.from_tf1_checkpoint:
            path = export_tf1_checkpoint(F.from_tf1_checkpoint, F.export_dir, F.version,
                                         F.overwrite, (F.image_size, F.image_size),
                                         F.tf1_weights, F.resnet_nonlinearity, F.max_samples)
        else:
            path = export_run(F.checkpoint_dir, F.export_dir, F.version, F.overwrite,
                              max_samples=F.max_samples)
    except UserError as e:  # bad flags, checkpoints, folders: one line; bugs: a traceback
        sys.exit(f"export.py: error: {e}")
    meta = describe(path)
    source = meta.get("source") or f"step {meta['training_step']}"
    weights = "EMA" if meta["weights"] == "polyak_average" else meta["weights"]
    print(f"exported {meta['kind']} ({source}, {weights} weights) to {path}")


if __name__ == "__main__":
    app.run(main)
