"""The training loop: data parallelism, replica invariance, NaN stop, resume after SIGKILL."""
import concurrent.futures
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp.runtime import data
from pixel_cnn_pp.errors import ConfigError, TrainingError
from pixel_cnn_pp.runtime.config import TrainConfig
from pixel_cnn_pp.runtime.runs import load_run
from pixel_cnn_pp.runtime.trainer import Trainer
from conftest import REPO, TINY_RUN
from processes import in_one_process, run_train

TINY = dict(model_options=dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_p=0.0),
            batch_size=8,
            init_batch_size=16, learning_rate=3e-3, lr_decay=1.0, max_epochs=1,
            save_interval=1, steps_per_epoch=4, num_samples=0, seed=3)


@functools.lru_cache(maxsize=None)
def mirrored(n):
    """One strategy per replica count for the whole session: two live 2-replica strategies in
    one process can hand out the same collective instance keys for different tensors."""
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)])


def seeded_trainer(config, dataset, strategy, save_dir, **kwargs):
    """A Trainer whose weights and dropout follow `config.seed`, as train.py seeds them."""
    keras.utils.set_random_seed(config.seed)
    return Trainer(config, dataset, strategy, save_dir, **kwargs)


def test_two_replicas_take_the_one_replica_step_and_lower_the_loss(tmp_path):
    """One step on two replicas equals the step on one (to summation order); more steps on
    two replicas lower the loss and keep both replicas' copies of every variable equal."""
    # The paper's learning rate. Adam's first step is lr * g / sqrt(g^2 + eps), so float noise
    # of a near-zero (cancelling) gradient sum shows up scaled by lr: measured 1.5e-5 in one of
    # 768 entries of one variable at 1e-3.
    config = TrainConfig(**{**TINY, "learning_rate": 1e-3})
    trainers = [seeded_trainer(config, data.load("digits"), mirrored(n), str(tmp_path / str(n)))
                for n in (1, 2)]
    trainers[0].restore_or_initialize()
    for source, target in zip(trainers[0].model.weights, trainers[1].model.weights):
        target.assign(source.numpy())
    trainers[1].ema.reset()
    images, labels = next(iter(data.batches(trainers[0].data.train, 16)))
    for trainer in trainers:
        batch = trainer.strategy.experimental_distribute_values_from_function(
            lambda ctx: (tf.split(images, ctx.num_replicas_in_sync)[ctx.replica_id_in_sync_group],
                         tf.split(labels, ctx.num_replicas_in_sync)[ctx.replica_id_in_sync_group]))
        trainer.train_step(batch)
    # Summation order differs (one sum vs two halves); the spec allows 1e-5. Adam's first step
    # turns float noise of a near-zero gradient sum into up to ~lr, so a rare entry (which one
    # depends on the dropout masks) may differ by more; unsynchronised replicas would differ
    # everywhere, by far more.
    diffs = np.concatenate([np.abs(a.numpy() - b.numpy()).ravel() for a, b in zip(
        trainers[0].model.trainable_variables, trainers[1].model.trainable_variables)])
    assert diffs.max() < 2 * config.learning_rate and np.mean(diffs > 1e-5) < 1e-3, (
        diffs.max(), np.mean(diffs > 1e-5))
    moved = max(np.abs(a.numpy() - s.numpy()).max()
                for a, s in zip(trainers[1].model.trainable_variables, trainers[1].ema.shadows))
    assert moved > 1e-4  # the step changed the weights, so the comparison means something
    two = trainers[1]
    losses = [float(two.train_step(batch)) for _ in range(10)]  # the batch split above
    assert two.replicas == 2 and two.global_batch == 16
    assert losses[-1] < losses[0] * 0.95, losses  # measured 0.92 after 8 steps at lr 1e-3
    for variable in two.model.trainable_variables[:5] + two.ema.shadows[:5]:
        copies = [v.numpy() for v in variable.value.values]
        np.testing.assert_array_equal(copies[0], copies[1])


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    trainer = seeded_trainer(TrainConfig(**{**TINY, "max_epochs": 2}), data.load("digits"),
                             mirrored(1), str(tmp_path))
    trainer.train()  # writes the checkpoint of epoch 1
    saved = trainer.manager.latest_checkpoint
    trainer.config.max_epochs = 3
    trainer.train_step = lambda batch: tf.constant(math.nan)
    with pytest.raises(TrainingError, match=r"loss is nan .*Last good checkpoint: .*ckpt-8"):
        trainer.train()
    assert trainer.manager.latest_checkpoint == saved


def checkpoint_values(save_dir):
    reader = tf.train.load_checkpoint(os.path.join(save_dir, "checkpoints"))
    # Everything: weights, Polyak shadows, the optimizer's moments and step, the epoch.
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith("_CHECKPOINTABLE")}


def kill_after_epoch_1(procs):
    """SIGKILL each of `procs` {save dir: train.py run of `TINY_RUN`, 2 epochs of 2 steps} once
    its epoch 1 is saved (all watched together)."""
    deadline, left = time.time() + 240, dict(procs)
    while left and time.time() < deadline:
        for save_dir, proc in list(left.items()):
            assert proc.poll() is None, f"the run into {save_dir} ended before it could be killed"
            state = save_dir / "checkpoints" / "checkpoint"
            if state.exists() and "ckpt-2" in state.read_text():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                del left[save_dir]
        time.sleep(0.05)
    assert not left, f"not killed in time: {list(left)}"


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_run, tmp_path):
    """A run killed by SIGKILL after epoch 1 of 2 and resumed ends with the uninterrupted run's
    weights, Polyak averages, optimizer slots and step, bit for bit: with and without --remat
    (its recomputed blocks draw the same dropout masks). The uninterrupted run without it is
    the shared `tiny_run` (the same flags); the one with it runs beside the killed runs, which
    are processes of their own; the two resumptions share one process."""
    variants = {"default": [], "remat": ["--remat"]}
    args = {name: TINY_RUN + extra for name, extra in variants.items()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
    killed = {tmp_path / name / "killed": subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *args[name],
         f"--save_dir={tmp_path / name / 'killed'}"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT) for name in variants}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # while the killed runs are watched
        reference = pool.submit(in_one_process, "train", [
            args["remat"] + [f"--save_dir={tmp_path / 'remat' / 'ref'}"]])
        kill_after_epoch_1(killed)
        reference = reference.result()
    assert reference[0]["exit"] == 0, reference
    references = {"default": tiny_run, "remat": tmp_path / "remat" / "ref"}
    resumed = in_one_process("train", [args[name] + [f"--save_dir={tmp_path / name / 'killed'}"]
                                       for name in variants])
    for name, result in zip(variants, resumed):
        assert result["exit"] == 0, (name, result)
        assert "resumed from" in result["stdout"], name
        killed_dir = tmp_path / name / "killed"
        assert "ckpt-4" in (killed_dir / "checkpoints" / "checkpoint").read_text()
        expected, got = checkpoint_values(references[name]), checkpoint_values(killed_dir)
        assert expected.keys() == got.keys()
        assert sum(key.startswith("optimizer/") for key in expected) > 100  # slots compared too
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name}: {key}")


def test_eval_and_sample_modes(run_dir):
    save = f"--save_dir={run_dir}"
    evaluated, sampled = in_one_process("train", [
        [save, "--mode=eval"], [save, "--mode=sample", "--num_samples=3", "--seed=5"]])
    assert evaluated["exit"] == 0 and sampled["exit"] == 0, (evaluated, sampled)
    bpd = float(evaluated["stdout"].strip().split()[-1])
    # The EMA weights' own bits/dim over the 288 test images of 18 batches of 16 (the default
    # --batch_size; the last partial batch dropped, as the original).
    model = load_run(str(run_dir)).model
    test = data.load("digits").test
    images = np.concatenate([i.numpy() for i, _ in data.batches(test, 16)])
    assert len(images) == 288
    np.testing.assert_allclose(bpd, float(np.mean(model.bits_per_dim(images))), atol=1e-5)
    samples = np.load(run_dir / "samples" / "samples_seed_5.npy")
    assert samples.shape == (3, 8, 8, 1) and samples.dtype == np.uint8
    assert (run_dir / "samples" / "samples_seed_5.png").stat().st_size > 100
    assert list((run_dir / "tensorboard" / "train").iterdir())


def _losses(tmp_path, steps, dtype="float32", **variant):
    options = dict(TINY["model_options"], dtype=dtype)
    trainer = seeded_trainer(TrainConfig(**{**TINY, "model_options": options, **variant}),
                             data.load("digits"), mirrored(1), str(tmp_path), log=lambda *_: None)
    trainer.restore_or_initialize()
    batch = next(iter(trainer.distribute(trainer.data.train, 0)))
    return trainer, [float(trainer.train_step(batch)) for _ in range(steps)]


def test_mixed_bfloat16_trains_with_a_float32_loss(tmp_path):
    trainer, losses = _losses(tmp_path, 8, dtype="mixed_bfloat16")
    assert trainer.model.compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # nothing global changed
    conv = trainer.model.down_blocks[0][0][1].conv2  # a sublayer deep inside
    assert conv.compute_dtype == "bfloat16" and conv.V.dtype == "float32"
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0] * 0.95, losses
    images = data.load("digits").test.batch(4).take(1).get_single_element()[0]
    from pixel_cnn_pp.model.autoregressive import images_to_float
    assert trainer.model.nll(images_to_float(images)).dtype == "float32"
    assert 0 < trainer.evaluate("test") < 8


def test_jit_compile_step_matches_the_plain_step(tmp_path):
    _, plain = _losses(tmp_path / "plain", 3)
    _, xla = _losses(tmp_path / "xla", 3, jit_compile=True)
    np.testing.assert_allclose(xla, plain, rtol=1e-4)


def test_unknown_precision_is_refused(tmp_path):
    options = dict(TINY["model_options"], dtype="mixed_float16")
    with pytest.raises(ConfigError, match="dtype='mixed_float16' is not one of"):
        seeded_trainer(TrainConfig(**{**TINY, "model_options": options}), data.load("digits"),
                       mirrored(1), str(tmp_path))


def test_the_readme_demo(tmp_path):
    """The README's quick start (--preset=demo, shortened) runs as documented (--global_batch_size
    over two CPU replicas: the multi-worker test's mirrored run)."""
    demo = run_train(["--preset=demo", "--max_epochs=1", "--steps_per_epoch=2",
                      "--num_samples=4", f"--save_dir={tmp_path / 'demo'}"])
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert "pixel_cnn_pp on digits (8, 8, 1)" in demo.stdout
    assert "SavedModel (TF Serving) of the EMA weights" in demo.stdout
    for produced in ("export/1/saved_model.pb", "samples/samples_epoch_0001.png",
                     "checkpoints/ckpt-2.index", "run.json"):
        assert (tmp_path / "demo" / produced).exists(), produced
    assert json.loads((tmp_path / "demo" / "run.json").read_text())["model_options"][
        "nr_filters"] == 32  # the preset's, not the flag default
