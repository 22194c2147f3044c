"""Shared test set-up: quiet TensorFlow, two logical CPU devices, the original's fixtures, one
trained run to copy."""
import fcntl
import os
import pathlib
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from models import FIXTURES, load_fixture, random_images, small_pixelcnn  # noqa: E402,F401
from processes import TINY_FLAGS, run_train  # noqa: E402

# In-process tests run TensorFlow's default kernels for this CPU and the caller's environment
# (importing the project changes neither); train.py and export.py, run as users run them, set
# oneDNN's rewrites where the environment leaves them unset (runtime/hardware.py).
import tensorflow as tf  # noqa: E402

# Two logical CPU devices so MirroredStrategy can be tested on one CPU; must happen before
# TensorFlow initialises its devices, hence here.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

# The files by their time on 2 cores, longest first (measured with --durations; the rest are
# under a minute each): xdist hands them out in this order, so the two workers finish
# together instead of one running the last long file alone.
LONGEST_FIRST = ["test_training.py", "test_export.py", "test_jax_backend.py",
                 "test_reliability.py", "test_score_cli.py", "test_discrete.py",
                 "test_codes_cli.py", "test_cli.py", "test_sampling.py", "test_tf1_checkpoint.py",
                 "test_pixel_snail_training.py", "test_model.py", "test_mixture.py",
                 "test_hardware.py"]


def pytest_sessionstart(session):
    session.config.stash[_STARTED] = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    """With TEST_BUDGET_SECONDS set (.ci/run sets it), a whole run that takes longer fails."""
    budget = float(os.environ.get("TEST_BUDGET_SECONDS") or 0)
    if not budget or hasattr(session.config, "workerinput"):  # xdist workers: the run is not theirs
        return
    took = time.monotonic() - session.config.stash[_STARTED]
    print(f"\nthe test suite took {took:.0f} s (budget {budget:.0f} s)")
    if took > budget and exitstatus == 0:
        print(f"error: the test suite took {took:.0f} s, over its budget of {budget:.0f} s "
              "(TEST_BUDGET_SECONDS); --durations lists the slowest tests")
        session.exitstatus = 1


_STARTED = pytest.StashKey()


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's order kept


REPO = pathlib.Path(__file__).parent.parent
# A train.py run that tests copy (`tiny_run`): checkpoints ckpt-2 and ckpt-4 (two epochs of two
# steps), no export.
TINY_RUN = TINY_FLAGS + ["--max_epochs=2", "--save_interval=1", "--steps_per_epoch=2"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, worker_id):
    """The save dir of one `TINY_RUN` of train.py, trained once per test run (the first xdist
    worker to ask trains it, under a file lock; the others wait and share it); tests that
    write into a run take `run_dir`, their own copy."""
    if worker_id == "master":  # no xdist: this process's own temporary folder
        root = tmp_path_factory.mktemp("tiny_run")
    else:  # the folder above the workers' own: one per test run
        root = tmp_path_factory.getbasetemp().parent
    save_dir = root / "tiny_run"
    with open(root / "tiny_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "tiny_run.done").exists():
            shutil.rmtree(save_dir, ignore_errors=True)  # a half-trained one, if any
            result = run_train(TINY_RUN + [f"--save_dir={save_dir}"])
            assert result.returncode == 0, result.stderr[-2000:]
            (root / "tiny_run.done").touch()
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
