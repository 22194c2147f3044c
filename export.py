"""Export a trained run as a versioned SavedModel for TF Serving, or describe an export.

    python export.py --save_dir=runs/demo                  # to runs/demo/export/<next version>
    python export.py --save_dir=runs/demo --export_dir=/models/pixelcnn --version=3 --overwrite
    python export.py --tf1_checkpoint=pxpp/params_cifar.ckpt --export_dir=/models/pxpp
    python export.py --describe=runs/demo/export/1         # its metadata; how to serve it

Writes the Polyak-averaged (EMA) weights of the latest checkpoint, or of a checkpoint of the
original TF1 code, to <export_dir>/<version>/, with the kernel settings it was exported under.
This file only parses flags; the work is in pixel_cnn_pp/runtime/export.py.
"""
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pixel_cnn_pp.runtime import cli, hardware  # noqa: E402

hardware.set_onednn_default()  # before TensorFlow starts: the export records what it ran under

flags.DEFINE_string("save_dir", None, "Run folder of a training run (train.py --save_dir).")
flags.DEFINE_string("export_dir", None, "Folder of versions (default: <save_dir>/export).")
flags.DEFINE_integer("version", None, "Version number (default: the next free integer).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_string("tf1_checkpoint", None,
                    "Export a checkpoint of the original TF1 code (prefix or folder) instead of "
                    "a training run; the architecture is read from it.")
flags.DEFINE_enum("tf1_weights", "ema", ["ema", "raw"],
                  "Weights of --tf1_checkpoint: Polyak (EMA) shadows or raw.")
flags.DEFINE_integer("max_samples", 256,
                     "Most images one request of the `sample` signature may ask for (bounds the "
                     "memory and time of a request; recorded in metadata.json).")
flags.DEFINE_integer("image_size", 32, "Height and width of the images of --tf1_checkpoint.")
flags.DEFINE_enum("resnet_nonlinearity", None, ["elu", "relu"],
                  "For --tf1_checkpoint: relu if the original ran with it (its shapes cannot "
                  "tell relu from elu).")
flags.DEFINE_string("describe", None,
                    "Print the metadata of an export version (a folder <export_dir>/<version>) "
                    "and how to serve it under the kernel settings it was exported with; "
                    "exports nothing.")
OLD_SPELLINGS = [cli.define_old_spelling("checkpoint_dir", "save_dir"),
                 cli.define_old_spelling("from_tf1_checkpoint", "tf1_checkpoint")]
F = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    from pixel_cnn_pp.errors import UserError
    try:
        cli.apply_old_spellings("export.py", OLD_SPELLINGS)
        if sum(map(bool, (F.save_dir, F.tf1_checkpoint, F.describe))) != 1:
            raise UserError("give exactly one of --save_dir, --tf1_checkpoint, --describe")
        if F.tf1_checkpoint and not F.export_dir:
            raise UserError("--export_dir is required with --tf1_checkpoint")
        if F.image_size <= 0:
            raise UserError(f"--image_size={F.image_size} must be positive")
        from pixel_cnn_pp.runtime import export
        if F.describe:
            print("\n".join(export.describe_lines(F.describe)))
            return
        hardware.choose_filter_gradient()
        if F.tf1_checkpoint:
            path = export.export_tf1_checkpoint(
                F.tf1_checkpoint, F.export_dir, F.version, F.overwrite,
                (F.image_size, F.image_size), F.tf1_weights, F.resnet_nonlinearity,
                F.max_samples)
        else:
            path = export.export_run(F.save_dir, F.export_dir, F.version, F.overwrite,
                                     max_samples=F.max_samples)
        meta = export.describe(path)
    except UserError as e:  # bad flags, checkpoints, folders: one line; bugs: a traceback
        sys.exit(f"export.py: error: {e}")
    source = meta.get("source") or f"step {meta['training_step']}"
    weights = "EMA" if meta["weights"] == "polyak_average" else meta["weights"]
    print(f"exported {meta['kind']} ({source}, {weights} weights) to {path}")
    print(f"serve it under the kernel settings it was exported with: "
          f"{export.serving_command(path, meta)}")


if __name__ == "__main__":
    app.run(main)
