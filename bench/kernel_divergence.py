"""How often the same seed gives other images under other CPU kernels: oneDNN's rewrites off
(TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own kernels) against on (=1), the same weights, the same
draws.

    python bench/kernel_divergence.py                        # paper configuration, 256 images
    python bench/kernel_divergence.py --nr_resnet=1 --nr_filters=32 --num_samples=16   # quick

One process makes the model (data-dependent init on random images, saved as a .keras file);
then one process per setting loads it and draws `--num_samples` images with the cached
sampler (`sampling.continuous`, what `model.sample` and the export's `sample` signature run)
for `--seed`. Images do not depend on the batch they are drawn in, so the first 16 of the 256
are the 16 images of a 16-image request. Reported: the fraction of images and of sub-pixels
that differ, and for each image that differs, what its first differing sub-pixel was: a level
rounding (the two continuous values within --boundary of each other: a value within float
rounding of a level boundary went the other way) or a mixture choice (the values far apart: a
near-tie of two components' Gumbel-perturbed logits went the other way).
"""
import json
import os
import subprocess
import sys
import tempfile

import harness

harness.setup()  # no TensorFlow in this process: each setting gets its own

from absl import app, flags  # noqa: E402

flags.DEFINE_string("preset", "cifar10", "Preset whose model is sampled.")
flags.DEFINE_integer("nr_resnet", 0, "Override nr_resnet (0: the preset's).")
flags.DEFINE_integer("nr_filters", 0, "Override nr_filters (0: the preset's).")
flags.DEFINE_integer("num_samples", 256, "Images per setting, drawn in one batch.")
flags.DEFINE_integer("seed", 1, "Seed of the draws.")
flags.DEFINE_float("boundary", 1e-3, "Continuous values closer than this: a level rounding.")
flags.DEFINE_string("child", None, "Internal: make | sample, run by the parent.")
flags.DEFINE_string("path", None, "Internal: the folder the processes share.")
F = flags.FLAGS

SETTINGS = {"off": "0", "on": "1"}


def make(folder):
    import numpy as np

    from pixel_cnn_pp.model.registry import build_model
    from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters") if getattr(F, k)}
    config, dataset, _ = from_preset(F.preset, dropout_p=0.0, **overrides)
    shape = DATASET_SHAPES[dataset]
    model = build_model(config.model, shape, **config.model_options)
    model.build_all()
    model.initialize(np.random.RandomState(0).randint(0, 256, (16, *shape), np.uint8))
    model.save(os.path.join(folder, "model.keras"))


def sample(folder):
    import keras
    import numpy as np
    from keras import ops

    import pixel_cnn_pp.model.pixelcnn  # noqa: F401  (the Keras classes of the .keras file)
    import pixel_snail.model  # noqa: F401
    from pixel_cnn_pp.model import sampling
    from pixel_cnn_pp.model.autoregressive import float_to_images
    from pixel_cnn_pp.runtime import hardware
    model = keras.models.load_model(os.path.join(folder, "model.keras"))
    x = ops.convert_to_numpy(sampling.continuous(model, F.num_samples, F.seed))
    setting = os.environ[hardware.ONEDNN]
    np.save(os.path.join(folder, f"continuous_{setting}.npy"), x)
    np.save(os.path.join(folder, f"images_{setting}.npy"),
            ops.convert_to_numpy(float_to_images(x)))  # model.sample's rounding
    with open(os.path.join(folder, f"settings_{setting}.json"), "w") as f:
        json.dump(hardware.kernel_settings(), f)


def child(role, folder, onednn="1"):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    args = [a for a in sys.argv[1:] if not a.startswith(("--child", "--path"))]
    subprocess.run([sys.executable, sys.argv[0], *args, f"--child={role}", f"--path={folder}"],
                   env=env, check=True)


def compare(folder):
    import numpy as np
    x = {name: np.load(os.path.join(folder, f"continuous_{value}.npy"))
         for name, value in SETTINGS.items()}
    onednn = {name: json.load(open(os.path.join(folder, f"settings_{value}.json")))[
        "onednn_in_effect"] for name, value in SETTINGS.items()}
    levels = {name: np.load(os.path.join(folder, f"images_{value}.npy"))
              for name, value in SETTINGS.items()}
    n = F.num_samples
    lines = ["| images | images that differ | sub-pixels that differ | first difference: "
             "level rounding / mixture choice |", "|---|---|---|---|"]
    for count in sorted({min(16, n), n}):
        a, b = levels["off"][:count], levels["on"][:count]
        differ = (a != b).reshape(count, -1)
        first = differ.argmax(axis=1)
        gaps = [abs(x["off"][k].ravel()[first[k]] - x["on"][k].ravel()[first[k]])
                for k in range(count) if differ[k].any()]
        rounding = sum(g < F.boundary for g in gaps)
        lines.append(f"| {count} | {differ.any(axis=1).sum()} of {count} "
                     f"({differ.any(axis=1).mean():.1%}) | {differ.mean():.3%} | "
                     f"{rounding} / {len(gaps) - rounding} |")
    lines.append(f"\noneDNN in effect: off run {onednn['off']}, on run {onednn['on']}; largest "
                 f"continuous difference {np.abs(x['off'] - x['on']).max():.3g}")
    return lines


def main(argv):
    del argv
    if F.child == "make":
        return make(F.path)
    if F.child == "sample":
        return sample(F.path)
    with tempfile.TemporaryDirectory() as folder:
        child("make", folder)
        for value in SETTINGS.values():
            child("sample", folder, value)
        harness.report(f"{F.preset}{' (overridden)' if F.nr_resnet or F.nr_filters else ''}, "
                       f"seed {F.seed}: images under oneDNN off against on",
                       compare(folder), machine=harness.machine_header(frameworks=False))


if __name__ == "__main__":
    app.run(main)
