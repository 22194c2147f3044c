"""Export a trained run as a versioned SavedModel for TF Serving.

    python export.py --checkpoint_dir=runs/demo --export_dir=runs/demo/export
    python export.py --checkpoint_dir=runs/demo --export_dir=/models/pixelcnn --version=3 --overwrite

Writes the Polyak-averaged (EMA) weights of the latest checkpoint to <export_dir>/<version>/.
This file only parses flags; the work is in pixel_cnn_pp/export.py.
"""
import os
import sys

from absl import app, flags, logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("checkpoint_dir", None, "Save dir of a training run (train.py --save_dir).")
flags.DEFINE_string("export_dir", None, "Folder of versions (default: <checkpoint_dir>/export).")
flags.DEFINE_integer("version", None, "Version number (default: the next free integer).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
F = flags.FLAGS


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep TF's INFO lines out of the progress output
    from pixel_cnn_pp.export import ExportError, describe, export_run
    import pixel_snail.model  # noqa: F401 - registers PixelSNAIL for deserialisation
    if not F.checkpoint_dir:
        sys.exit("export.py: error: --checkpoint_dir is required")
    try:
        path = export_run(F.checkpoint_dir, F.export_dir, F.version, F.overwrite)
    except ExportError as e:
        sys.exit(f"export.py: error: {e}")
    meta = describe(path)
    print(f"exported {meta['kind']} (step {meta['training_step']}, EMA weights) to {path}")


if __name__ == "__main__":
    app.run(main)
