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

from conftest import TINY_RUN as RUN, random_images, small_pixelcnn
from pixel_cnn_pp.errors import DataError
from pixel_cnn_pp.runtime import runs
from pixel_cnn_pp.runtime.export import export_model
from processes import in_one_process, last_line, run_train


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


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


def lose_state(run_dir, how):
    state_file = run_dir / "checkpoints" / "checkpoint"
    if how == "deleted":
        state_file.unlink()
    else:
        state_file.write_text("this is not a checkpoint state {{{")


# -- checkpoints never silently restart ------------------------------------------------------------

def test_a_lost_state_file_resumes_from_the_checkpoints_present(commands):
    """The checkpoint state file deleted, or garbage: the run resumes from the newest
    checkpoint present (deleted: and trains on; garbage: with no epoch left to train)."""
    for state in ("deleted", "garbage"):
        result, save_dir, before, _ = commands[f"state {state}"]
        assert result["exit"] == 0, (state, result)
        out = result["stdout"]
        assert "rebuilt it from the 2 checkpoint(s) present" in out, state
        assert "resumed from" in out and "ckpt-4: step 4, epoch 2" in out, state
        assert "data-dependent init" not in out
        after = files(save_dir / "checkpoints")
        assert all(after[name] == content for name, content in before.items()
                   if name.startswith("ckpt-"))  # nothing lost or overwritten
    assert "ckpt-6.index" in files(commands["state deleted"][1] / "checkpoints")


def test_a_damaged_newest_checkpoint_falls_back_to_the_older_one(commands):
    """Training, and the read-only users of a run (eval, sample, export through load_run): one
    damaged copy of the run each."""
    results = {mode: commands[f"damaged {mode}"][0] for mode in ("eval", "sample", "train")}
    for mode, result in results.items():
        assert result["exit"] == 0, (mode, result)
        assert "ckpt-4 cannot be restored" in result["stdout"], mode
    assert "EMA weights of " in results["eval"]["stdout"]
    assert "ckpt-2)" in results["eval"]["stdout"]
    assert "resumed from" in results["train"]["stdout"]
    assert "ckpt-2: step 2, epoch 1" in results["train"]["stdout"]
    train_dir, sample_dir = commands["damaged train"][1], commands["damaged sample"][1]
    assert ckpt(train_dir, 6).with_suffix(".index").exists()
    assert (sample_dir / "samples" / "samples_seed_1.npy").exists()


# -- refused before any work, nothing written ------------------------------------------------------
# name: (how to prepare a copy of the trained run, or None for a fresh save dir; the flags
# after RUN; the text of the one-line error)
REFUSED = {
    "no readable checkpoint": (
        lambda d: (damage(d, 2, "truncate"), damage(d, 4, "truncate")), ["--max_epochs=3"],
        "no readable checkpoint in"),
    "locked save dir": (None, ["--max_epochs=3"], "is in use by another run (pid {holder} on"),
    "other learning rate": (None, ["--max_epochs=3", "--learning_rate=0.01"],
                            "--learning_rate=0.01 (the run: 0.001)"),
    "other seed": (None, ["--max_epochs=3", "--seed=9"], "--seed=9 (the run: 1)"),
    "other binarize": (None, ["--max_epochs=3", "--binarize"],
                       "--binarize=True (the run: False)"),
    "now a background model": (None, ["--max_epochs=3", "--mutation_rate=0.2"],
                               "--mutation_rate=0.2 (the run: 0.0)"),
    "mutation rate above 1": (False, ["--mutation_rate=1.5"], "--mutation_rate=1.5 must be in [0, 1]"),
    "negative l2 weight": (False, ["--l2_weight=-1"], "--l2_weight=-1.0 must be >= 0 and finite"),
    "binary output, grey data": (
        False, ["--model=pixel_snail", "--attn_rep=1", "--output=bernoulli"],
        "has a binary output (--output=bernoulli) but --dataset=digits has pixels other than 0"),
    "batch above the test split": (
        False, ["--batch_size=300"],
        "the test split of --dataset=digits has 297 images, fewer than one global batch (300"),
    "init batch above the train split": (
        False, ["--init_batch_size=5000"], "--init_batch_size=5000 exceeds the 1500 training"),
    "nan learning rate": (False, ["--learning_rate=nan"],
                          "--learning_rate=nan must be positive and finite"),
    "negative epsilon": (False, ["--adam_epsilon=-1e-8"],
                         "--adam_epsilon=-1e-08 must be positive and finite"),
    "save dir is a file": ("file", [], "is a file, not a folder"),
}


def stale_lock(save_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (save_dir / ".lock").write_text(json.dumps(
        {"pid": int(dead), "host": os.uname().nodename, "started": "2026-11-25 10:00:00"}))


# name: (how to prepare a copy of the trained run, the flags after the save dir): runs that
# go on from a damaged or abandoned copy.
RESUMED = {
    "state deleted": (lambda d: lose_state(d, "deleted"), RUN + ["--max_epochs=3"]),
    "state garbage": (lambda d: lose_state(d, "garbage"), RUN),
    "damaged eval": (lambda d: damage(d, 4, "truncate"), ["--mode=eval"]),
    "damaged sample": (lambda d: damage(d, 4, "flip"), ["--mode=sample", "--num_samples=2"]),
    "damaged train": (lambda d: damage(d, 4, "flip"), RUN + ["--max_epochs=3"]),
    # taken over and resumed, with no epoch left to train: the lock and the recorded change
    "stale lock": (stale_lock, RUN + ["--learning_rate=0.01", "--allow_changed_hparams"]),
}


@pytest.fixture(scope="module")
def commands(tiny_run, tmp_path_factory):
    """{name: (its exit and output, the save dir, its files before, the lock holder's pid)} of
    every
    REFUSED and RESUMED command line, all run in one process; a live process holds the lock
    of one copy."""
    root = tmp_path_factory.mktemp("commands")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        cases = {}
        for index, (name, (prepare, flags, _)) in enumerate(REFUSED.items()):
            save_dir = root / str(index)
            if prepare is False:
                pass  # a fresh run: nothing may be created
            elif prepare == "file":
                save_dir.write_text("not a folder")
            else:
                shutil.copytree(tiny_run, save_dir)
                if prepare:
                    prepare(save_dir)
            if name == "locked save dir":
                (save_dir / ".lock").write_text(json.dumps(
                    {"pid": holder.pid, "host": os.uname().nodename,
                     "started": "2026-11-25 10:00:00"}))
            before = files(save_dir) if save_dir.is_dir() else save_dir.exists()
            cases[name] = (RUN + flags + [f"--save_dir={save_dir}"], save_dir, before)
        for name, (prepare, flags) in RESUMED.items():
            save_dir = root / name.replace(" ", "_")
            shutil.copytree(tiny_run, save_dir)
            prepare(save_dir)
            cases[name] = (flags + [f"--save_dir={save_dir}"], save_dir,
                           files(save_dir / "checkpoints"))
        results = in_one_process("train", [args for args, _, _ in cases.values()])
    finally:
        holder.kill()
        holder.wait()
    return {name: (result, save_dir, before, holder.pid)
            for (name, (_, save_dir, before)), result in zip(cases.items(), results)}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_before_any_work_and_nothing_written(commands, name):
    result, save_dir, before, holder = commands[name]
    message = REFUSED[name][2].format(holder=holder)
    assert isinstance(result["exit"], str), result
    assert result["exit"].startswith("train.py: error:") and message in result["exit"], result
    assert "\n" not in result["exit"]
    assert "data-dependent init" not in result["stdout"]
    if REFUSED[name][0] is False:
        assert not save_dir.exists()
    elif REFUSED[name][0] == "file":
        assert save_dir.read_text() == "not a folder"
    else:
        assert files(save_dir) == before
    if name == "other learning rate":
        assert "--allow_changed_hparams" in result["exit"]


def test_every_refusal_exits_non_zero_with_one_line_on_stderr(tmp_path):
    """What the batch above checks through `main`, as a user sees it once: exit status 1 and
    the error as the last line of stderr."""
    path = tmp_path / "file"
    path.write_text("not a folder")
    result = run_train(RUN + [f"--save_dir={path}"])
    assert result.returncode == 1
    assert f"train.py: error: --save_dir='{path}' is a file, not a folder" == last_line(result)


def test_a_stale_lock_is_taken_over_and_released(commands):
    result, run_dir, _, _ = commands["stale lock"]
    assert result["exit"] == 0, result
    assert "taking over the stale lock" in result["stdout"]
    assert not (run_dir / ".lock").exists()
    # --allow_changed_hparams continued the run and recorded the change.
    run = json.loads((run_dir / "run.json").read_text())
    assert run["train_config"]["learning_rate"] == 0.01
    assert run["changes"] == [{"step": 4, "setting": "learning_rate", "from": 0.001, "to": 0.01}]


def test_lock_is_exclusive_in_process(tmp_path):
    with runs.RunLock(str(tmp_path)):
        with pytest.raises(runs.CheckpointError, match=f"pid {os.getpid()} on"):
            with runs.RunLock(str(tmp_path)):
                pass
    assert not (tmp_path / ".lock").exists()


def test_bernoulli_trains_on_binarized_data(tmp_path):
    result = run_train(RUN + ["--model=pixel_snail", "--attn_rep=1", "--output=bernoulli",
                              "--binarize", "--max_epochs=1", f"--save_dir={tmp_path}"])
    assert result.returncode == 0, result.stderr[-2000:]


# -- smaller ones ----------------------------------------------------------------------------------

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
