"""Categorical outputs over code maps, spatial and class conditioning (both models): exact
normalisation by enumeration, causality by gradients, the condition used at every level and
learnt (a copy task), the cached sampler equal to the naive one, temperature, input checks."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from models import code_prior
from pixel_cnn_pp.errors import ConfigError, DataError
from pixel_cnn_pp.model.pixelcnn import PixelCNNpp
from pixel_snail.model import PixelSNAIL


def all_maps(num_codes, size):
    return np.array(list(itertools.product(range(num_codes), repeat=size * size)),
                    np.int32).reshape(-1, size, size)


def total_probability(model, maps, **given):
    """sum over `maps` of p(map | given), given one condition / label for every map."""
    n = len(maps)
    kw = {k: np.repeat(np.asarray(v)[None], n, 0) for k, v in given.items()}
    logs = [ops.convert_to_numpy(model.log_likelihood(
        maps[i:i + 8192], **{k: v[i:i + 8192] for k, v in kw.items()}))
        for i in range(0, n, 8192)]
    return np.exp(np.concatenate(logs).astype(np.float64)).sum()


# PixelSNAIL: K = 3 on 2x2 maps (81); PixelCNN++ needs sides divisible by 4: K = 2 on 4x4 (65,536).
@pytest.mark.parametrize("snail, num_codes, size", [(True, 3, 2), (False, 2, 4)])
def test_probabilities_of_all_code_maps_sum_to_one(snail, num_codes, size):
    maps = all_maps(num_codes, size)
    if snail:  # 65,536 maps: the PixelCNN++'s conditioned sums below are enough
        model, _ = code_prior(snail, num_codes, size)
        assert abs(total_probability(model, maps) - 1) < 1e-4
    conditioned, batch = code_prior(snail, num_codes, size, condition="codes", num_classes=2)
    given = ((0, 0), (1, 1)) if snail else ((1, 1),)  # 65,536 maps: one condition is enough
    totals = [total_probability(conditioned, maps, condition=batch["condition"][i],
                                class_label=label) for i, label in given]
    np.testing.assert_allclose(totals, 1.0, atol=1e-4)
    # ... and the two conditions give different distributions
    a, b = (ops.convert_to_numpy(conditioned.log_likelihood(
        maps[:50], condition=np.repeat(batch["condition"][i:i + 1], 50, 0),
        class_label=np.full(50, i))) for i in (0, 1))
    assert np.abs(a - b).max() > 1e-3


@pytest.mark.parametrize("snail", [True, False])
def test_logits_depend_only_on_earlier_codes(snail):
    model, batch = code_prior(snail, num_codes=4, size=4, condition="features", num_classes=2)
    x = tf.Variable(model.distribution.encode(batch["codes"][:2]))
    labels, condition = batch["class_label"][:2], batch["condition"][:2]
    for position in (0, 5, 15):
        row, col = divmod(position, 4)
        with tf.GradientTape() as tape:
            logits = model(x, class_label=labels, condition=condition)[:, row, col]
            total = tf.reduce_sum(logits * tf.random.stateless_normal(logits.shape, (1, position)))
        grad = np.abs(tape.gradient(total, x).numpy()).sum(axis=(0, 3)).reshape(-1)
        assert (grad[position:] == 0).all(), (position, grad)
        assert position == 0 or grad[:position].max() > 0


@pytest.mark.parametrize("snail", [True, False])
def test_the_condition_is_used_at_every_level(snail):
    model, batch = code_prior(snail, num_codes=4, size=4, condition="features")
    condition = tf.Variable(batch["condition"])
    projections = [layer.cond_map for layer in _gated_resnets(model)]
    variables = [p.V for p in projections]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model.nll(model.distribution.encode(batch["codes"]),
                                       condition=condition))
    grads = tape.gradient(loss, [condition] + variables)
    assert np.abs(grads[0].numpy()).min() > 0  # every entry of the condition matters
    assert all(np.abs(g.numpy()).max() > 0 for g in grads[1:])  # every block's projection
    # PixelCNN++'s blocks run at H, H/2 and H/4 (4x4, 2x2, 1x1 here): u and ul of 3 up and
    # 5 down pairs; PixelSNAIL's 2 attention blocks have 4 gated resnets each at H (nr_resnet
    # 1, content, query, output).
    assert len(projections) == (8 if snail else 2 * (3 + 5))


def _gated_resnets(model):
    from pixel_cnn_pp.model.gated_resnet import GatedResnet
    return [layer for layer in model._flatten_layers() if isinstance(layer, GatedResnet)]


def test_a_copy_task_is_learnt_with_the_condition_only():
    """codes = the condition's codes: under 0.1 nats per position after training with the
    condition; without it, no better than log K (the codes are uniform)."""
    def train(conditioned):
        keras.utils.set_random_seed(3)
        model = PixelSNAIL(image_shape=(4, 4), output="categorical", num_codes=4, nr_resnet=1,
                           nr_filters=16, attn_rep=1, key_size=4, dropout_p=0.0,
                           **(dict(condition_shape=(4, 4), condition_codes=4) if conditioned
                              else {}))
        rng = np.random.RandomState(0)
        codes = rng.randint(0, 4, (512, 4, 4)).astype(np.int32)
        given = {"condition": codes} if conditioned else {}
        model.initialize(codes[:32], **{k: v[:32] for k, v in given.items()})
        optimizer = keras.optimizers.Adam(3e-3)

        @tf.function
        def step(c):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model.nll(model.distribution.encode(c),
                                                condition=c if conditioned else None)) / 16
            optimizer.apply(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables)
            return loss

        for i in range(300):
            step(codes[(i % 16) * 32:(i % 16 + 1) * 32])
        test = rng.randint(0, 4, (64, 4, 4)).astype(np.int32)
        nats = -ops.convert_to_numpy(model.log_likelihood(
            test, condition=test if conditioned else None)) / 16
        return float(nats.mean())

    with_condition, without = train(True), train(False)
    assert with_condition < 0.1, with_condition
    assert without > np.log(4) - 0.05, without


@pytest.mark.parametrize("snail", [True, False])
def test_cached_sampler_equals_naive_for_code_maps(snail):
    model, batch = code_prior(snail, num_codes=5, size=4, condition="codes", num_classes=3)
    given = dict(condition=batch["condition"][:4], class_label=batch["class_label"][:4])
    cached = model.sample(4, seed=3, **given)
    assert cached.dtype == np.int32 and cached.shape == (4, 4, 4)
    np.testing.assert_array_equal(cached, model.sample(4, seed=3, method="naive", **given))
    assert len(np.unique(cached)) > 2
    known = np.zeros((4, 4), bool)
    known[:2] = True  # a sample's first rows complete to it (categorical draws are levels)
    np.testing.assert_array_equal(model.complete(cached, known, seed=3, **given), cached)
    if not snail:
        return  # the temperature's draw is the distribution's, the same for both models
    cold = model.sample(4, seed=3, temperature=0.05, **given)  # almost the argmax
    np.testing.assert_array_equal(cold, model.sample(4, seed=3, method="naive",
                                                     temperature=0.05, **given))
    assert not np.array_equal(cold, cached)


def test_a_low_temperature_draws_the_most_likely_code():
    model, _ = code_prior(True, num_codes=6, size=2)
    drawn = model.sample(64, seed=0, temperature=1e-3)
    first = ops.convert_to_numpy(model(model.distribution.encode(np.zeros((1, 2, 2), np.int32))))
    assert (drawn[:, 0, 0] == first[0, 0, 0].argmax()).all()  # position 0 sees no code


def test_without_conditioning_the_config_and_arithmetic_are_unchanged():
    keras.utils.set_random_seed(0)
    model = PixelCNNpp(image_shape=(8, 8, 3), nr_resnet=1, nr_filters=8, nr_logistic_mix=2)
    config = model.get_config()
    assert not {"condition_shape", "condition_codes", "num_codes", "output"} & set(config)
    snail = PixelSNAIL(image_shape=(8, 8, 1), nr_resnet=1, nr_filters=8, attn_rep=1)
    assert not {"condition_shape", "num_codes"} & set(snail.get_config())


def test_a_conditioned_code_prior_round_trips_through_a_keras_file(tmp_path):
    model, batch = code_prior(True, num_codes=4, size=4, condition="codes", num_classes=2)
    model.save(tmp_path / "prior.keras")
    loaded = keras.models.load_model(tmp_path / "prior.keras")
    given = dict(condition=batch["condition"], class_label=batch["class_label"])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(loaded.log_likelihood(batch["codes"], **given)),
        ops.convert_to_numpy(model.log_likelihood(batch["codes"], **given)))


@pytest.mark.parametrize("build, message", [
    (lambda: PixelSNAIL(image_shape=(6, 6), output="categorical", num_codes=4,
                        condition_shape=(4, 4, 2)),
     "a condition of size 4 cannot be resized to 6 by an integer factor"),
    (lambda: PixelCNNpp(image_shape=(8, 8), output="categorical", num_codes=1),
     "num_codes must be at least 2"),
    (lambda: PixelCNNpp(image_shape=(8, 8, 3), output="categorical", num_codes=4),
     "output='categorical' models code maps"),
    (lambda: PixelCNNpp(image_shape=(8, 8, 3), num_codes=4), "num_codes=4 needs output="),
    (lambda: PixelSNAIL(image_shape=(8, 8, 1), condition_codes=4), "needs condition_shape"),
])
def test_bad_configurations_are_refused(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_bad_inputs_are_refused_with_one_line():
    model, batch = code_prior(True, num_codes=4, size=4, condition="codes")
    codes, condition = batch["codes"], batch["condition"]
    cases = [
        (lambda: model.log_likelihood(codes + 4, condition=condition),
         r"codes must be in \[0, 4\), got values in \[4, 7\]"),
        (lambda: model.log_likelihood(codes.astype(np.float32), condition=condition),
         "codes must be integer code maps"),
        (lambda: model.log_likelihood(codes[:, :2], condition=condition),
         r"codes have shape \(8, 2, 4\); this model takes \(batch, 4, 4\)"),
        (lambda: model.log_likelihood(codes), "pass condition"),
        (lambda: model.log_likelihood(codes, condition=condition[:3]), "3 maps for 8 data"),
        (lambda: model.log_likelihood(codes, condition=condition + 3),
         r"condition must be in \[0, 3\)"),
        (lambda: model.sample(2, condition=condition[:2], temperature=0), "temperature must be"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message):
            call()
    images = PixelCNNpp(image_shape=(8, 8, 1), nr_resnet=1, nr_filters=4, nr_logistic_mix=1)
    with pytest.raises(DataError, match="needs a categorical output"):
        images.sample(1, temperature=0.5)


SERVE = """
import json, sys, numpy as np, tensorflow as tf
spec = json.loads(sys.argv[1])
m = tf.saved_model.load(spec['path'])
given = {k: tf.constant(np.load(spec[k])) for k in ('condition', 'class_label')}
out = {'ll': m.signatures['serving_default'](codes=tf.constant(np.load(spec['codes'])),
                                             **given)['log_likelihood'].numpy(),
       'codes': m.signatures['sample'](num_samples=tf.constant(3), seed=tf.constant(4, tf.int64),
                                       condition=given['condition'],
                                       class_label=tf.constant(1))['codes'].numpy()}
assert not [k for k in sys.modules if k.split('.')[0] in ('pixel_cnn_pp', 'pixel_snail')]
np.savez(spec['out'], **out)
"""


def test_the_saved_model_of_a_conditioned_prior_returns_the_apis_codes(tmp_path):
    """In a process that imports nothing of this project: serving_default's log-likelihoods
    and sample's codes for a seed, with a code-map condition and a class; bad codes and
    conditions refused by the graph."""
    import json
    import os
    import subprocess
    import sys
    from pixel_cnn_pp.runtime.export import export_model
    model, batch = code_prior(True, num_codes=5, size=4, condition="codes", num_classes=3)
    path = export_model(model, str(tmp_path / "prior"))
    codes, condition = batch["codes"][:3], batch["condition"][:3]
    labels = batch["class_label"][:3].astype(np.int32)
    spec = {"path": path, "out": str(tmp_path / "out.npz")}
    for name, value in (("codes", codes), ("condition", condition), ("class_label", labels)):
        spec[name] = str(tmp_path / f"{name}.npy")
        np.save(spec[name], value)
    result = subprocess.run([sys.executable, "-c", SERVE, json.dumps(spec)], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(spec["out"]) as out:
        np.testing.assert_allclose(out["ll"], ops.convert_to_numpy(model.log_likelihood(
            codes, condition=condition, class_label=labels)), rtol=1e-5)
        served = out["codes"]
    assert served.dtype == np.int32
    np.testing.assert_array_equal(served, model.sample(3, seed=4, condition=condition,
                                                       class_label=1))
    likelihood = tf.saved_model.load(path).signatures["serving_default"]
    given = dict(codes=tf.constant(codes), condition=tf.constant(condition),
                 class_label=tf.constant(labels))
    for bad, message in ((dict(codes=tf.constant(codes + 5)), r"codes must be in \[0, 5\)"),
                         (dict(condition=tf.constant(condition[:2])),
                          r"condition must be int32 \[batch, 2, 2\], one per datum"),
                         (dict(condition=tf.constant(condition + 3)),
                          r"condition must be in \[0, 3\)")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            likelihood(**{**given, **bad})
