"""The original Adam, its learning-rate decay and the Polyak average against NumPy and the
original code's one-step fixture."""
import numpy as np
import tensorflow as tf
import keras

from pixel_cnn_pp.model.optim import OriginalAdam, PolyakAverage
from pixel_cnn_pp.model.tf1_names import tf1_variable_names
from conftest import small_pixelcnn


def numpy_adam(p, grads, lr, decay, b1=0.95, b2=0.9995, eps=1e-8):
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        lr_t = lr * decay ** t  # decayed before every step, the first included
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr_t * (m / (1 - b1 ** t)) / np.sqrt(v / (1 - b2 ** t) + eps)
    return p


def test_adam_matches_numpy_formulas_over_several_steps():
    rng = np.random.RandomState(0)
    p0 = rng.normal(size=(5, 3)).astype(np.float32)
    # Tiny gradients make eps-inside-the-sqrt visible: eps outside would differ a lot.
    grads = [rng.normal(scale=s, size=(5, 3)).astype(np.float32) for s in (1e-4, 1.0, 30.0)]
    var = keras.Variable(p0)
    opt = OriginalAdam(learning_rate=0.01, lr_decay=0.9)
    for g in grads:
        opt.apply([g], [var])
    expected = numpy_adam(p0.astype(np.float64), grads, 0.01, 0.9)
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-5, atol=1e-7)
    eps_outside = keras.Variable(p0)
    keras_adam = keras.optimizers.Adam(0.01, beta_1=0.95, beta_2=0.9995, epsilon=1e-8)
    for g in grads:
        keras_adam.apply([g], [eps_outside])
    assert np.abs(eps_outside.numpy() - expected).max() > 1e-3  # the test can tell them apart


def test_one_adam_step_matches_original(pixelcnn_fixture):
    fx = pixelcnn_fixture
    model = small_pixelcnn()
    names = tf1_variable_names(model)
    for name, variable in names.items():
        variable.assign(fx[f"var/{name}"])
    opt = OriginalAdam(float(fx["adam_step1_lr"]), lr_decay=1.0)  # the fixture's step: no decay
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.nll(fx["x"], training=True))
    opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    for name in fx["meta"]["grad_vars"]:
        np.testing.assert_allclose(names[name].numpy(), fx[f"adam_step1/{name}"],
                                   rtol=1e-5, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(float(tf.reduce_sum(model.nll(fx["x"]))),
                               fx["loss_after_adam_step1_nats"], rtol=1e-4)


def test_polyak_average_matches_numpy_and_swaps_weights():
    values = [np.float32(v) for v in (1.0, 3.0, -2.0, 0.5)]
    var = keras.Variable(values[0])
    ema = PolyakAverage([var], decay=0.9)
    shadow = np.float64(values[0])
    for value in values[1:]:
        var.assign(value)
        ema.update()
        shadow = shadow - (1 - 0.9) * (shadow - value)
    np.testing.assert_allclose(ema.shadows[0].numpy(), shadow, rtol=1e-6)
    with ema.averaged():
        np.testing.assert_allclose(var.numpy(), shadow, rtol=1e-6)
    assert var.numpy() == values[-1]
