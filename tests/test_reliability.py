"""What a user or an operator can do wrong, and what the project does about it: checkpoints that
never silently restart, one run per save dir, resumes that keep the run's settings, data that a
model cannot use, and errors before work (each case reproduced through train.py)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, random_images, small_pixelcnn
from pixel_cnn_pp.errors import DataError
from pixel_cnn_pp.runtime import runs
from pixel_cnn_pp.runtime.export import export_model
from test_training import TINY_FLAGS, run_train

RUN = TINY_FLAGS + ["--max_epochs=2", "--save_interval=1", "--steps_per_epoch=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run with checkpoints ckpt-2 and ckpt-4 (copied per test)."""
    save_dir = tmp_path_factory.mktemp("trained") / "run"
    result = run_train(RUN + [f"--save_dir={save_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    return save_dir


@pytest.fixture
def run_dir(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


def ckpt(run_dir, step):
    return run_dir / "checkpoints" / f"ckpt-{step}"


def damage(run_dir, step, how):
    data = ckpt(run_dir, step).with_name(f"ckpt-{step}.data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    if how == "truncate":
        raw = raw[:len(raw) // 3]
    else:  # flip one byte of the model's variables (near the start of the file)
        raw[64] ^= 0xFF
    data.write_bytes(bytes(raw))


# -- 3. checkpoints never silently restart -------------------------------------------------

@pytest.mark.parametrize("state", ["deleted", "garbage"])
def test_a_lost_state_file_resumes_from_the_checkpoints_present(run_dir, state):
    state_file = run_dir / "checkpoints" / "checkpoint"
    if state == "deleted":
        state_file.unlink()
    else:
        state_file.write_text("this is not a checkpoint state {{{")
    before = files(run_dir / "checkpoints")
    result = run_train(RUN + ["--max_epochs=3", f"--save_dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rebuilt it from the 2 checkpoint(s) present" in result.stdout
    assert "resumed from" in result.stdout and "ckpt-4: step 4, epoch 2" in result.stdout
    assert "data-dependent init" not in result.stdout
    after = files(run_dir / "checkpoints")
    assert all(after[name] == content for name, content in before.items()
               if name.startswith("ckpt-"))  # nothing lost or overwritten
    assert "ckpt-6.index" in after


@pytest.mark.parametrize("how,mode", [("truncate", "eval"), ("flip", "sample"),
                                      ("flip", "train")])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(run_dir, how, mode):
    """Training, and the read-only users of a run (eval, sample, export through load_run)."""
    damage(run_dir, 4, how)
    args = RUN + ["--max_epochs=3"] if mode == "train" else ["--num_samples=2"]
    result = run_train(args + [f"--save_dir={run_dir}", f"--mode={mode}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ckpt-4 cannot be restored" in result.stdout
    if mode == "eval":
        assert "EMA weights of " in result.stdout and "ckpt-2)" in result.stdout
    if mode == "train":
        assert "resumed from" in result.stdout and "ckpt-2: step 2, epoch 1" in result.stdout
        assert ckpt(run_dir, 6).with_suffix(".index").exists()


def test_no_readable_checkpoint_is_refused_not_restarted(run_dir):
    damage(run_dir, 2, "truncate")
    damage(run_dir, 4, "truncate")
    before = files(run_dir)
    result = run_train(RUN + ["--max_epochs=3", f"--save_dir={run_dir}"])
    assert result.returncode != 0
    assert last_line(result).startswith("train.py: error: no readable checkpoint in")
    assert "ckpt-4" in last_line(result) and "ckpt-2" in last_line(result)
    assert files(run_dir) == before


# -- 4. one run per save dir; a resume keeps the run's settings ----------------------------

def test_a_second_run_on_a_locked_save_dir_is_refused_without_writing(run_dir):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": os.uname().nodename, "started": "2026-11-25 10:00:00"}
        (run_dir / ".lock").write_text(json.dumps(lock))
        before = files(run_dir)
        result = run_train(RUN + ["--max_epochs=3", f"--save_dir={run_dir}"])
        assert result.returncode != 0
        assert f"is in use by another run (pid {holder.pid} on" in last_line(result)
        assert files(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone now: the next run takes the stale lock over and releases it.
    result = run_train(RUN + ["--max_epochs=3", f"--save_dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "taking over the stale lock" in result.stdout
    assert not (run_dir / ".lock").exists()


def test_lock_is_exclusive_in_process(tmp_path):
    with runs.RunLock(str(tmp_path)):
        with pytest.raises(runs.CheckpointError, match=f"pid {os.getpid()} on"):
            with runs.RunLock(str(tmp_path)):
                pass
    assert not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("change,message", [
    (["--learning_rate=0.01"], "--learning_rate=0.01 (the run: 0.001)"),
    (["--seed=9"], "--seed=9 (the run: 1)"),
    (["--binarize"], "--binarize=True (the run: False)"),
])
def test_a_resume_with_other_settings_is_refused(run_dir, change, message):
    before = files(run_dir)
    result = run_train(RUN + ["--max_epochs=3", f"--save_dir={run_dir}"] + change)
    assert result.returncode != 0
    assert message in last_line(result) and "--allow_changed_hparams" in last_line(result)
    assert files(run_dir) == before


def test_allow_changed_hparams_continues_and_records_the_change(run_dir):
    result = run_train(RUN + ["--max_epochs=3", "--learning_rate=0.01",
                              "--allow_changed_hparams", f"--save_dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["train_config"]["learning_rate"] == 0.01
    assert run["changes"] == [{"step": 4, "setting": "learning_rate", "from": 0.001, "to": 0.01}]


# -- 5, 6. data a model cannot use, and errors before work ---------------------------------

@pytest.mark.parametrize("args,message", [
    (["--model=pixel_snail", "--attn_rep=1", "--output=bernoulli"],
     "has a binary output (--output=bernoulli) but --dataset=digits has pixels other than 0"),
    (["--batch_size=300"], "the test split of --dataset=digits has 297 images, fewer than one "
                           "global batch (300"),
    (["--init_batch_size=5000"], "--init_batch_size=5000 exceeds the 1500 training images"),
    (["--learning_rate=nan"], "--learning_rate=nan must be positive and finite"),
    (["--adam_epsilon=-1e-8"], "--adam_epsilon=-1e-08 must be positive and finite"),
])
def test_unusable_settings_fail_before_any_work(tmp_path, args, message):
    result = run_train(RUN + [f"--save_dir={tmp_path / 'run'}"] + args)
    assert result.returncode != 0
    assert last_line(result).startswith("train.py: error:") and message in last_line(result), \
        result.stderr[-1500:]
    assert "data-dependent init" not in result.stdout
    assert not (tmp_path / "run").exists()


def test_bernoulli_trains_on_binarized_data(tmp_path):
    result = run_train(RUN + ["--model=pixel_snail", "--attn_rep=1", "--output=bernoulli",
                              "--binarize", "--max_epochs=1", f"--save_dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_save_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    result = run_train(RUN + [f"--save_dir={path}"])
    assert result.returncode != 0
    assert f"--save_dir='{path}' is a file, not a folder" in last_line(result)
    assert path.read_text() == "not a folder"


# -- 7. smaller ones -----------------------------------------------------------------------

def test_an_export_killed_while_writing_leaves_nothing_behind_the_next(tmp_path):
    model = small_pixelcnn(image_shape=(4, 4, 1), nr_filters=4, nr_logistic_mix=1)
    root = tmp_path / "models"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (root / f".tmp-1-{dead}-abc").mkdir(parents=True)  # what a SIGKILL leaves
    (root / f".tmp-1-{os.getpid()}-live").mkdir()  # a live export's folder
    export_model(model, str(root))
    assert sorted(os.listdir(root)) == [f".tmp-1-{os.getpid()}-live", "1"]


def test_python_api_takes_tensors_and_refuses_bad_input():
    model = small_pixelcnn(nr_filters=4, nr_logistic_mix=1, num_classes=3)
    images = random_images((2, 8, 8, 3))
    expected = model.bits_per_dim(images, class_label=[0, 1])
    got = model.bits_per_dim(tf.constant(images), class_label=tf.constant([0, 1]))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    bad = [((images[:0], 0), "images is an empty batch"),
           ((images.astype(np.int64).tolist(), 0), "images must be uint8"),
           ((images[..., :1], 0), r"images have shape \(2, 8, 8, 1\)"),
           ((images, [0.0, 1.0]), "class_label must be integers"),
           ((images, [0, 1, 2]), r"class_label has shape \(3,\)")]
    for args, message in bad:
        with pytest.raises(DataError, match=message):
            model.bits_per_dim(*args)
    for count in (2.7, 0, "3"):
        with pytest.raises(DataError, match="num_samples must be a positive integer"):
            model.sample(count, class_label=0)
