"""Checks shared by the conformance tests of both models against the original code's fixtures
(tests/fixtures/*.npz)."""
import math

import numpy as np
import tensorflow as tf
from keras import ops

RTOL = 1e-4  # the fixtures' float32 accuracy; do not loosen


def assign(names, values):
    """Set every variable of {original name: variable} to values(original name)."""
    for name, variable in names.items():
        variable.assign(values(name))


def assert_ddi_matches(model, names, fx, before):
    """From the pre-init values `before(name)`, data-dependent init on the fixture's init batch
    reproduces the original's initialised weights (`var/`)."""
    assign(names, before)
    model.initialize(fx["x_init_uint8"])
    for name, variable in names.items():
        np.testing.assert_allclose(ops.convert_to_numpy(variable), fx[f"var/{name}"],
                                   rtol=RTOL, atol=1e-5, err_msg=name)


def assert_output_and_loss(model, names, fx, weights):
    """With the raw (`train`) or EMA (`eval`) weights of the fixture, the network output, the
    summed-nats loss and bits/dim equal the original's."""
    if weights == "train":
        assign(names, lambda n: fx[f"var/{n}"])
    else:  # EMA shadows where they differ from the raw weights
        assign(names, lambda n: fx.get(f"ema/{n}/ExponentialMovingAverage", fx[f"var/{n}"]))
    expected = fx[f"out_{weights}"]
    out = ops.convert_to_numpy(model(fx["x"]))
    np.testing.assert_allclose(out, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())
    loss = float(ops.sum(model.nll(fx["x"])))
    np.testing.assert_allclose(loss, fx[f"loss_{weights}_nats"], rtol=RTOL)
    bpd = ops.convert_to_numpy(model.bits_per_dim(fx["x_uint8"])).mean()
    np.testing.assert_allclose(bpd, fx[f"bpd_{weights}"], rtol=RTOL)
    dims = math.prod(fx["x"].shape)
    np.testing.assert_allclose(fx[f"loss_{weights}_nats"] / (math.log(2) * dims),
                               fx[f"bpd_{weights}"], rtol=1e-6)


def assert_per_image_loss_and_gradients(model, names, fx):
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
