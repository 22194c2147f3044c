"""Shared test set-up: quiet TensorFlow, two logical CPU devices, the original's fixtures."""
import json
import os
import pathlib
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from processes import TINY_FLAGS, run_train  # noqa: E402

# TensorFlow is imported before pixel_cnn_pp, so in-process tests run TensorFlow's own CPU
# kernels: with the package's oneDNN default the suite took 27.5 min instead of 23 (one run
# each), too close to CI's 30. Results differ by float32 rounding only; the CLI tests run
# train.py and export.py as users do, with the default.
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy can be tested on one CPU; must happen before
# TensorFlow initialises its devices, hence here.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# The files by their time on 2 cores, longest first (measured with --durations; the rest are
# under a minute each): xdist hands them out in this order, so the two workers finish
# together instead of one running the last long file alone.
LONGEST_FIRST = ["test_training.py", "test_reliability.py", "test_sampling.py", "test_export.py",
                 "test_cli.py", "test_pixel_snail.py", "test_tf1_checkpoint.py", "test_model.py",
                 "test_mixture.py", "test_train_step.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's order kept


FIXTURES = pathlib.Path(__file__).parent / "fixtures"
REPO = pathlib.Path(__file__).parent.parent
# A train.py run that tests copy (`tiny_run`): checkpoints ckpt-2 and ckpt-4 (two epochs of two
# steps), no export.
TINY_RUN = TINY_FLAGS + ["--max_epochs=2", "--save_interval=1", "--steps_per_epoch=2"]


def load_fixture(name):
    with np.load(FIXTURES / f"{name}.npz") as data:
        out = {k: data[k] for k in data.files}
    if "meta_json" in out:
        out["meta"] = json.loads(str(out["meta_json"]))
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The save dir of one `TINY_RUN` of train.py, trained once per test process; tests that
    write into a run take `run_dir`, their own copy."""
    save_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    result = run_train(TINY_RUN + [f"--save_dir={save_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    return save_dir


@pytest.fixture
def run_dir(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


@pytest.fixture(scope="session")
def pixelcnn_fixture():
    return load_fixture("pixelcnn_small")


@pytest.fixture(scope="session")
def dmol_fixture():
    return load_fixture("dmol_sampler")


def small_pixelcnn(**overrides):
    """A tiny PixelCNN++ for fast tests (the fixture's configuration by default)."""
    from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
    config = dict(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=16, nr_logistic_mix=3,
                  dropout_p=0.0)
    config.update(overrides)
    model = PixelCNNpp(**config)
    model.build_all()
    return model


def random_images(shape, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype("uint8")
