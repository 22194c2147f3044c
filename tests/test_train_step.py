"""The training step is one definition: the JAX benchmark's pure step (`stateless_step`) and the
TensorFlow trainer's step (tape, Adam, Polyak) give the same loss, weights and averages."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import random_images
from fixture_checks import run_with_jax_backend
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.train_step import TrainStep

OPTIONS = dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_p=0.0)
# Adam's first steps are lr * g / sqrt(g^2 + eps): with the original's eps 1e-8 a gradient that
# cancels to ~1e-4 turns float noise of the sum (the backends' convolutions add in different
# orders) into differences of order lr. A larger eps keeps the update a smoother function of the
# gradient: measured, all but a few of ~2,000 values agree to 1e-6, the worst to 1.4e-5. A strong
# lr decay makes a wrong decay, epsilon, bias correction or Polyak rate show at 1e-4 and above.
SETTINGS = dict(learning_rate=3e-3, lr_decay=0.5, adam_epsilon=1e-2, polyak_decay=0.9)


def _step(labels=None):
    model = build_model("pixel_cnn_pp", (8, 8, 3), num_classes=3 if labels is not None else None,
                        **OPTIONS)
    model.build_all()
    return TrainStep(model, **SETTINGS)


JAX_STEP = """
import numpy as np, jax, keras
from pixel_cnn_pp.model.registry import build_model
from pixel_cnn_pp.model.train_step import TrainStep
data = np.load({path!r})
model = build_model("pixel_cnn_pp", (8, 8, 3), num_classes=3, **{options!r})
model.build_all()
step = TrainStep(model, **{settings!r})
for k, v in enumerate(model.trainable_variables):
    v.assign(data[f"w{{k}}"])
for k, s in enumerate(step.ema.shadows):
    s.assign(data[f"s{{k}}"])
state, loss = jax.jit(step.stateless_step)(step.state(), data["images"], data["labels"])
state, loss = jax.jit(step.stateless_step)(state, data["images"], data["labels"])
np.testing.assert_allclose(float(loss), float(data["loss"]), rtol=1e-5)
diffs = np.concatenate([np.abs(np.asarray(v) - data[f"{{kind}}_after{{k}}"]).ravel()
                        for kind, values in (("w", state[0]), ("s", state[3]))
                        for k, v in enumerate(values)])
assert diffs.max() < 5e-5 and np.mean(diffs > 1e-6) < 0.01, (diffs.max(), np.mean(diffs > 1e-6))
print("JAX_OK", float(loss), diffs.max(), np.mean(diffs > 1e-6))
"""


def test_jax_stateless_step_equals_the_tensorflow_step(tmp_path):
    pytest.importorskip("jax", reason="jax is a test extra: pip install -e .[test]")
    keras.utils.set_random_seed(0)
    step = _step(labels=True)
    images = random_images((4, 8, 8, 3), seed=5)
    labels = np.array([0, 2, 1, 0], np.int32)
    step.model.initialize(images, class_label=labels)
    saved = {f"w{k}": v.numpy() for k, v in enumerate(step.model.trainable_variables)}
    saved.update({f"s{k}": s.numpy() for k, s in enumerate(step.ema.shadows)})
    for _ in range(2):  # two steps: the bias corrections and the decayed rate both move
        with tf.GradientTape() as tape:
            loss = step.loss(images, labels)
        step.apply(tape.gradient(loss, step.model.trainable_variables))
        step.update_average()
    saved.update({f"w_after{k}": v.numpy() for k, v in enumerate(step.model.trainable_variables)})
    saved.update({f"s_after{k}": s.numpy() for k, s in enumerate(step.ema.shadows)})
    moved = max(np.abs(saved[f"w_after{k}"] - saved[f"w{k}"]).max() for k in range(3))
    assert moved > 1e-3  # the steps changed the weights, so the comparison means something
    path = str(tmp_path / "step.npz")
    np.savez(path, images=images, labels=labels, loss=float(loss), **saved)
    run_with_jax_backend(JAX_STEP.format(path=path, options=OPTIONS, settings=SETTINGS))
