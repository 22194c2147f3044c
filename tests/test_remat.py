"""Gradient checkpointing (`remat=True`): the same loss and gradients as without it, to float
rounding, with dropout active (the recomputed pass applies the mask drawn in the forward pass),
for both models, conditioned too; kept in the model's config; free to change on resume."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp.model.levels import images_to_float
from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
from pixel_cnn_pp.runtime import runs
from pixel_snail.model import PixelSNAIL

MODELS = {
    "pixelcnn": (PixelCNNpp, dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, num_classes=3)),
    "snail": (PixelSNAIL, dict(nr_resnet=1, nr_filters=8, attn_rep=1, key_size=4,
                               nr_logistic_mix=2, condition_shape=(4, 4, 2))),
}


def loss_and_grads(name, remat):
    cls, options = MODELS[name]
    keras.utils.set_random_seed(0)
    model = cls(image_shape=(8, 8, 3), dropout_p=0.5, remat=remat, **options)
    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    given = {"class_label": np.array([0, 1, 2, 0])} if "num_classes" in options else {
        "condition": rng.randn(4, 4, 4, 2).astype(np.float32)}
    model.initialize(images, **given)
    keras.utils.set_random_seed(5)  # the dropout masks of the step: the same in both runs

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.nll(images_to_float(images), training=True, **given))
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = step()
    return model, float(loss), [g.numpy() for g in grads]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_remat_gives_the_gradients_without_it(name):
    _, loss, grads = loss_and_grads(name, False)
    model, remat_loss, remat_grads = loss_and_grads(name, True)
    assert model.get_config()["remat"] is True
    assert abs(remat_loss - loss) < 1e-5 * abs(loss)  # the same dropout masks
    assert len(grads) == len(remat_grads) > 10
    for plain, recomputed in zip(grads, remat_grads):
        np.testing.assert_allclose(recomputed, plain, rtol=0,
                                   atol=2e-4 * max(np.abs(plain).max(), 1e-3))
    dropped = [g for g in grads if np.abs(g).max() > 0]
    assert len(dropped) > 0.9 * len(grads)


def test_remat_is_in_the_config_only_when_on_and_free_to_change_on_resume():
    assert "remat" not in PixelCNNpp(image_shape=(8, 8, 1), nr_resnet=1, nr_filters=4,
                                     nr_logistic_mix=1).get_config()
    old = {"model": "pixel_cnn_pp", "image_shape": [8, 8, 1], "num_classes": None,
           "dataset": "digits", "binarize": False, "model_options": {"nr_filters": 8},
           "train_config": {}}
    new = {**old, "model_options": {"nr_filters": 8, "remat": True}}
    assert runs.run_differences(old, new) == []
