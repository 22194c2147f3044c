"""Checkpoints of the original TF1 code: the fixtures' real `tf.train.Saver` checkpoints convert
and reproduce the original's outputs; broken ones give the one-line report; train.py's eval and
export.py agree on the same weights."""
import re

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from conftest import FIXTURES, load_fixture
from fixture_checks import RTOL
from pixel_cnn_pp.errors import CheckpointError
from pixel_cnn_pp.runtime import data, tf1_checkpoint
from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
from pixel_cnn_pp.model.tf1_names import tf1_variable_names
from processes import in_one_process

FIXTURE_CHECKPOINTS = ["pixelcnn_small", "pixelsnail_small_q8"]


def write_tf1_checkpoint(prefix, arrays):
    """A name-based checkpoint as `tf.compat.v1.train.Saver` writes it."""
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[n]) for n in names])
    return str(prefix)


def fixture_arrays(name):
    reader = tf.train.load_checkpoint(str(FIXTURES / f"{name}_ckpt" / "params_cifar.ckpt"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


@pytest.mark.parametrize("name", FIXTURE_CHECKPOINTS)
def test_hyperparameters_are_read_off_the_checkpoint(name):
    fx = load_fixture(name)
    inferred = tf1_checkpoint.infer_hyperparameters(
        tf1_checkpoint.read(str(FIXTURES / f"{name}_ckpt")))
    opt = fx["meta"]["model_opt"]
    assert {k: inferred["options"][k] for k in opt} == opt
    assert inferred["num_classes"] is None and inferred["image_channels"] == 3
    if name == "pixelsnail_small_q8":
        assert inferred["model"] == "pixel_snail"
        assert {k: v for k, v in inferred["options"].items() if k not in opt} == dict(
            attn_rep=1, key_size=8, mixin_size=8, output="logistic_mixture")
    else:
        assert inferred["model"] == "pixel_cnn_pp" and set(inferred["options"]) == set(opt)


@pytest.mark.parametrize("weights,key", [("ema", "eval"), ("raw", "train")])
@pytest.mark.parametrize("name", FIXTURE_CHECKPOINTS)
def test_converted_fixture_reproduces_the_original(name, weights, key):
    """EMA shadows give the original's `out_eval` (its shadows of g, b are the pre-init 1, 0,
    so they differ from the raw weights), raw weights `out_train`."""
    fx = load_fixture(name)
    model = tf1_checkpoint.load_model(str(FIXTURES / f"{name}_ckpt"), image_size=(8, 8),
                                      weights=weights)
    assert model.count_params() == sum(int(np.prod(s)) for _, s in
                                       fx["meta"]["trainable_variables"])
    expected = fx[f"out_{key}"]
    out = ops.convert_to_numpy(model(fx["x"]))
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())
    np.testing.assert_allclose(float(ops.sum(model.nll(fx["x"]))), fx[f"loss_{key}_nats"],
                               rtol=RTOL)


def _broken(tmp_path, arrays, drop=(), add=None, reshape=()):
    arrays = {n: a for n, a in arrays.items() if n not in drop}
    arrays.update(add or {})
    for n in reshape:
        arrays[n] = np.zeros(arrays[n].shape[:-1] + (arrays[n].shape[-1] + 1,), np.float32)
    return write_tf1_checkpoint(tmp_path / "broken.ckpt", arrays)


def test_missing_extra_and_misshaped_variables_are_reported(tmp_path):
    arrays = fixture_arrays("pixelcnn_small")
    path = _broken(tmp_path, arrays,
                   drop=["model/dense_3/g/ExponentialMovingAverage", "model/conv2d_7/b"],
                   add={"model/dense_99/V": np.zeros((2, 2), np.float32)},
                   reshape=["model/conv2d_5/V/ExponentialMovingAverage"])
    for weights, missing in (("ema", "model/dense_3/g/ExponentialMovingAverage"),
                             ("raw", "model/conv2d_7/b")):
        with pytest.raises(CheckpointError) as error:
            tf1_checkpoint.load_model(path, image_size=(8, 8), weights=weights)
        message = str(error.value)
        assert "\n" not in message
        assert f"1 missing: {missing}" in message
        assert "1 unexpected: model/dense_99/V" in message
        if weights == "ema":
            assert ("1 with the wrong shape: model/conv2d_5/V/ExponentialMovingAverage "
                    "[2, 2, 32, 17] vs model [2, 2, 32, 16]") in message


def test_unreadable_or_foreign_checkpoints_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no TF1 checkpoint at"):
        tf1_checkpoint.read(str(tmp_path / "nothing.ckpt"))
    foreign = write_tf1_checkpoint(tmp_path / "foreign.ckpt", {"dense/kernel": np.zeros(3)})
    with pytest.raises(CheckpointError, match="is not an openai/pixel-cnn"):
        tf1_checkpoint.read(foreign)
    raw_only = {n: a for n, a in fixture_arrays("pixelsnail_small_q8").items()
                if not n.endswith("ExponentialMovingAverage")}
    path = write_tf1_checkpoint(tmp_path / "raw.ckpt", raw_only)
    with pytest.raises(CheckpointError, match="use --tf1_weights=raw"):
        tf1_checkpoint.load_model(path, image_size=(8, 8))
    assert tf1_checkpoint.load_model(path, image_size=(8, 8), weights="raw").count_params() == 9349


@pytest.fixture(scope="module")
def conditional_checkpoint(tmp_path_factory):
    """A class-conditional grayscale PixelCNN++ for the digits, written the way the original
    saves: TF1 names, EMA shadows (different from the raw weights) and anonymous Adam slots."""
    model = PixelCNNpp(image_shape=(8, 8, 1), nr_resnet=1, nr_filters=8, nr_logistic_mix=2,
                       dropout_p=0.0, num_classes=10)
    model.build_all()
    digits = data.load("digits")
    images, labels = next(iter(data.batches(digits.train, 32)))
    model.initialize(images.numpy(), class_label=labels.numpy())
    rng = np.random.RandomState(0)
    arrays = {"Variable": np.float32(7), "Variable_1": np.zeros((2, 3), np.float32)}
    for name, variable in tf1_variable_names(model).items():
        raw = ops.convert_to_numpy(variable)
        arrays[name] = raw
        arrays[name + "/ExponentialMovingAverage"] = \
            raw + 0.01 * rng.standard_normal(raw.shape).astype(np.float32)
    folder = tmp_path_factory.mktemp("tf1")
    return write_tf1_checkpoint(folder / "params_digits.ckpt", arrays), arrays


def test_class_conditional_checkpoint_converts_with_ema_preferred(conditional_checkpoint):
    path, arrays = conditional_checkpoint
    inferred = tf1_checkpoint.infer_hyperparameters(tf1_checkpoint.read(path))
    assert (inferred["num_classes"], inferred["image_channels"], inferred["options"]["nr_filters"],
            inferred["options"]["nr_logistic_mix"]) == (10, 1, 8, 2)
    for weights, suffix in (("ema", "/ExponentialMovingAverage"), ("raw", "")):
        model = tf1_checkpoint.load_model(path, image_size=(8, 8), weights=weights)
        for name, variable in tf1_variable_names(model).items():
            np.testing.assert_array_equal(ops.convert_to_numpy(variable), arrays[name + suffix])


@pytest.fixture(scope="module")
def tf1_commands(conditional_checkpoint, tmp_path_factory):
    """The command lines of a TF1 checkpoint's user, train.py's in one process: test bits/dim
    (--mode=eval), architecture flags that disagree with it, fine-tuning from it; then
    export.py on it."""
    path, _ = conditional_checkpoint
    root = tmp_path_factory.mktemp("tf1_commands")
    tune = [f"--tf1_checkpoint={path}", "--dataset=digits", "--batch_size=8",
            "--steps_per_epoch=2", "--max_epochs=1", "--num_samples=0", "--noexport_at_end",
            f"--save_dir={root / 'tuned'}"]
    evaluated, disagreeing, tuned = in_one_process("train", [
        ["--mode=eval", f"--tf1_checkpoint={path}", "--dataset=digits", "--batch_size=27",
         f"--save_dir={root / 'eval'}"], tune + ["--nr_filters=16"], tune])
    exported, = in_one_process("export", [[f"--tf1_checkpoint={path}",
                                           f"--export_dir={root / 'export'}", "--image_size=8"]])
    return root, {"eval": evaluated, "disagreeing": disagreeing, "tuned": tuned,
                  "export": exported}


def test_eval_mode_equals_the_export_of_the_same_weights(tf1_commands):
    """train.py --mode=eval and export.py --tf1_checkpoint: the export's log-likelihood
    signature over the same test images gives the same bits/dim."""
    root, results = tf1_commands
    assert results["eval"]["exit"] == 0 and results["export"]["exit"] == 0, results
    bpd = float(re.search(r"test bits/dim \(ema weights of .*\): ([\d.]+)",
                          results["eval"]["stdout"])[1])
    serving = tf.saved_model.load(str(root / "export" / "1")).signatures["serving_default"]
    test = data.load("digits").test  # 297 images = 11 batches of 27: none dropped
    images, labels = (np.concatenate(t) for t in zip(*[(i.numpy(), l.numpy()) for i, l in
                                                       data.batches(test, 99)]))
    out = serving(images=tf.constant(images), class_label=tf.constant(labels, tf.int32))
    assert len(images) == 297
    np.testing.assert_allclose(bpd, float(tf.reduce_mean(out["bits_per_dim"])), atol=2e-5)


def test_cli_reports_disagreeing_flags_and_fine_tunes(tf1_commands):
    root, results = tf1_commands
    assert results["disagreeing"]["exit"] == (
        "train.py: error: settings disagree with the TF1 checkpoint: --nr_filters=16 "
        "(checkpoint: 8); drop them to use the checkpoint's")
    good = results["tuned"]
    assert good["exit"] == 0, good
    assert "loaded the ema weights of TF1 checkpoint" in good["stdout"]
    assert "data-dependent init" not in good["stdout"]
    assert list((root / "tuned" / "checkpoints").glob("ckpt-2.index"))
