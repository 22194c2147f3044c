"""train.py as a user runs it: bad input gives one line and a non-zero exit, nothing is
overwritten; multi-worker training over two local processes."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from conftest import REPO
from processes import TINY_FLAGS, in_one_process, last_line, run_export, run_train


BAD_FLAGS = [  # (flags after TINY_FLAGS, the text of the one-line error)
    # First: TensorFlow's devices can be split only before the process initialises them.
    (["--cpu_replicas=2", "--global_batch_size=15"], "--global_batch_size=15 cannot be split"),
    (["--dataset=cifar100"], "--dataset='cifar100' is not one of"),
    (["--batch_size=-4"], "--batch_size=-4 must be >= 1"),
    (["--dropout_p=1.5"], "dropout_p must be in [0, 1), got 1.5"),
    (["--dataset=folder", "--data_dir=/nonexistent/images"], "is not a directory"),
    (["--preset=cifar11"], "--preset='cifar11' is not one of"),
    (["--mode=sample", "--num_samples=0"], "--num_samples=0 must be >= 1 with --mode=sample"),
    (["--num_samples=-1"], "--num_samples=-1 must be >= 0"),
]


def test_bad_flags_fail_with_one_line(tmp_path):
    """Each command line in one process (`in_one_process`): the error `main` exits with."""
    results = in_one_process("train", [TINY_FLAGS + [f"--save_dir={tmp_path / str(i)}"] + args
                                       for i, (args, _) in enumerate(BAD_FLAGS)])
    for i, ((args, message), result) in enumerate(zip(BAD_FLAGS, results)):
        error = result["exit"]
        assert isinstance(error, str) and "\n" not in error, (args, result)
        assert error.startswith("train.py: error:") and message in error, (args, error)
        assert not (tmp_path / str(i)).exists()


def test_old_flag_spellings_warn_and_still_work(tmp_path):
    # Each old spelling takes the new flag's place: the errors are those of the new flag.
    result = run_train(["--mode=eval", f"--save_dir={tmp_path / 'run'}",
                        "--init_from_tf1_checkpoint=/nonexistent/params.ckpt"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0
    assert "train.py: warning: --init_from_tf1_checkpoint is deprecated; use --tf1_checkpoint" \
        in lines
    assert lines[-1].startswith("train.py: error: no TF1 checkpoint at '/nonexistent/params.ckpt'")
    result = run_export(["--from_tf1_checkpoint=/nonexistent/params.ckpt"])
    assert result.stderr.strip().splitlines() == [
        "export.py: warning: --from_tf1_checkpoint is deprecated; use --tf1_checkpoint",
        "export.py: error: --export_dir is required with --tf1_checkpoint"]
    result = run_export(["--checkpoint_dir=runs/a", "--save_dir=runs/b"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "export.py: error: --checkpoint_dir='runs/a' and --save_dir='runs/b' disagree "
        "(--checkpoint_dir is the old spelling of --save_dir); give --save_dir only")
    assert not (tmp_path / "run").exists()


def test_a_run_json_with_the_old_field_name_is_the_same_run():
    """run.json files name TrainConfig's tf1_checkpoint "init_from_tf1_checkpoint"."""
    import dataclasses

    from pixel_cnn_pp.runtime import runs
    from pixel_cnn_pp.runtime.config import TrainConfig
    new = {"model": "pixel_cnn_pp", "image_shape": [8, 8, 1], "num_classes": None,
           "dataset": "digits", "binarize": False, "model_options": {"nr_filters": 8},
           "train_config": dataclasses.asdict(TrainConfig(tf1_checkpoint="params.ckpt"))}
    old = json.loads(json.dumps(new))
    old["train_config"]["init_from_tf1_checkpoint"] = old["train_config"].pop("tf1_checkpoint")
    assert runs.run_differences(old, new) == []
    old["train_config"]["seed"] = 2  # the comparison still sees the fields that matter
    assert runs.run_differences(old, new) == [("seed", 2, 1)]


def test_save_dir_of_another_model_is_refused_and_kept(tiny_run, run_dir):
    assert not (tiny_run / "samples").exists()  # --num_samples=0: no grids
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = run_train(TINY_FLAGS + ["--max_epochs=3", "--nr_filters=16",
                                     f"--save_dir={run_dir}"])
    assert result.returncode == 1
    assert "holds a different run: --nr_filters=16 (the run: 8)" in last_line(result)
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_trains_over_two_local_processes(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO),
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, str(REPO / "train.py"), *TINY_FLAGS, "--strategy=multi_worker",
             "--max_epochs=1", f"--save_dir={tmp_path}"],
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=400) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
    chief_out = outputs[0][0]
    assert "2 replica(s), global batch 16" in chief_out
    assert "epoch 1/1" in chief_out
    assert (tmp_path / "checkpoints" / "checkpoint").exists()
    # The workers trained one model together: the chief's weights are those of the same run
    # on two mirrored replicas of one process (same seed, data and global batch). Adam's first
    # steps turn float noise of near-zero gradient sums into differences of up to ~lr, so a few
    # entries may differ by that much; workers that did not sync would differ everywhere.
    mirrored = run_train(TINY_FLAGS + ["--cpu_replicas=2", "--global_batch_size=16",
                                       "--max_epochs=1", f"--save_dir={tmp_path / 'mirrored'}"])
    assert mirrored.returncode == 0, mirrored.stderr[-2000:]
    assert "2 replica(s), global batch 16" in mirrored.stdout
    weights = [tf.train.load_checkpoint(str(folder / "checkpoints")) for folder in
               (tmp_path, tmp_path / "mirrored")]
    names = [n for n in weights[0].get_variable_to_shape_map() if n.startswith("variables/")]
    diffs = np.concatenate([np.abs(weights[0].get_tensor(n) - weights[1].get_tensor(n)).ravel()
                            for n in names])
    assert len(names) > 100 and diffs.max() < 4e-3 and np.mean(diffs > 1e-5) < 0.01, (
        diffs.max(), np.mean(diffs > 1e-5))
