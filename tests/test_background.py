"""Background models for likelihood ratios (Ren et al. 2019): the mutation of training batches
and the L2 penalty; both off (0) leave training as it was."""
import dataclasses

import keras
import numpy as np
import tensorflow as tf

from pixel_cnn_pp.runtime import data
from pixel_cnn_pp.runtime.config import TrainConfig
from pixel_cnn_pp.runtime.trainer import Trainer

TINY = dict(model_options=dict(nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout_p=0.0),
            class_conditional=True, batch_size=16, init_batch_size=16, max_epochs=1,
            num_samples=0, seed=3)


def arrays(batches):
    return [(images.numpy(), labels.numpy()) for images, labels in batches]


def test_mutation_replaces_a_fraction_mu_of_the_subpixels_by_uniform_levels():
    digits = data.load("digits")
    plain = arrays(data.batches(digits.train, 64))
    mutated = arrays(data.mutate(data.batches(digits.train, 64), 0.3, (1, 0)))
    images = np.stack([m for m, _ in mutated])
    originals = np.stack([p for p, _ in plain])
    changed = images != originals
    expected = 0.3 * 255 / 256  # a drawn level equals the original one time in 256
    sigma = np.sqrt(expected * (1 - expected) / changed.size)
    assert abs(changed.mean() - expected) < 4 * sigma, (changed.mean(), expected)
    # Changed sub-pixels are uniform levels: digits hold only 17 levels, these all 256.
    assert len(np.unique(images[changed])) == 256
    assert abs(images[changed].astype(float).mean() - 127.5) < 4 * 74 / np.sqrt(changed.sum())
    assert all(np.array_equal(m, p) for (_, m), (_, p) in zip(mutated, plain))  # labels kept
    again = arrays(data.mutate(data.batches(digits.train, 64), 0.3, (1, 0)))
    assert all(np.array_equal(a, m) for (a, _), (m, _) in zip(again, mutated))  # reproducible
    next_epoch = arrays(data.mutate(data.batches(digits.train, 64), 0.3, (1, 1)))
    assert not np.array_equal(next_epoch[0][0], mutated[0][0])


def trainer(tmp_path, **settings):
    config = TrainConfig(**{**TINY, **settings})
    keras.utils.set_random_seed(config.seed)
    run = Trainer(config, data.load("digits"), tf.distribute.get_strategy(), str(tmp_path))
    run.restore_or_initialize()
    return run


def test_the_training_batches_are_mutated_only_with_a_mutation_rate(tmp_path):
    off = trainer(tmp_path / "off")
    on = trainer(tmp_path / "on", mutation_rate=0.2)
    plain = arrays(data.batches(off.data.train, 16, 3 + 1, off.data.train_size).take(3))
    for run, same in ((off, True), (on, False)):
        batches = iter(run.distribute(run.data.train, 3 + 1, epoch=1))
        for images, _ in plain:
            assert np.array_equal(next(batches)[0].numpy(), images) == same


def test_the_l2_penalty_adds_its_gradient_to_the_applied_weights_only(tmp_path):
    """lambda = 0: the gradients of the loss alone, as before. lambda > 0: those plus
    2 lambda B w for each g (a weight-normalised layer applies g V / ||V||) and the class
    weights hw; V and the biases get nothing; the reported loss is the nats alone."""
    off = trainer(tmp_path / "off")
    on = trainer(tmp_path / "on", l2_weight=1e-2)
    images, labels = next(iter(data.batches(off.data.train, 16)))
    with tf.GradientTape() as tape:
        loss = off.step.loss(images, labels)
    plain = tape.gradient(loss, off.model.trainable_variables)
    loss_off, grads_off = off._replica_loss_and_grads(images, labels)
    loss_on, grads_on = on._replica_loss_and_grads(images, labels)
    assert float(loss_off) == float(loss) and float(loss_on) == float(loss)
    names = set()
    for variable, g_plain, g_off, g_on in zip(off.model.trainable_variables, plain, grads_off,
                                              grads_on):
        np.testing.assert_array_equal(g_off.numpy(), g_plain.numpy())
        penalised = variable.name in ("g", "hw")
        names.add((variable.name, penalised))
        expected = g_plain.numpy() + (2 * 1e-2 * 16 * variable.numpy() if penalised else 0)
        np.testing.assert_allclose(g_on.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert {("g", True), ("hw", True), ("V", False), ("b", False)} <= names
    assert dataclasses.asdict(on.config)["l2_weight"] == 1e-2
