"""The discretized logistic mixture: original's numbers, normalisation, edge cases, sampler."""
import math

import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy import stats

from pixel_cnn_pp.model.mixture import (DiscretizedMixLogistic, coupled_means,
                                  discretized_mix_logistic_log_prob,
                                  discretized_mix_logistic_loss,
                                  sample_from_discretized_mix_logistic)

LEVELS = (np.arange(256, dtype=np.float32) - 127.5) / 127.5


def to_float(x_uint8):
    return (x_uint8.astype(np.float32) - 127.5) / 127.5


@pytest.mark.parametrize("tag", ["m3", "m10"])
def test_loss_and_sampler_match_original(dmol_fixture, tag):
    logits = dmol_fixture[f"{tag}/logits"]
    x = to_float(dmol_fixture[f"{tag}/x_uint8"])
    loss = float(discretized_mix_logistic_loss(x, logits))
    np.testing.assert_allclose(loss, dmol_fixture[f"{tag}/loss_nats"], rtol=1e-5)
    per_image = ops.convert_to_numpy(discretized_mix_logistic_loss(x, logits, sum_all=False))
    np.testing.assert_allclose(per_image, dmol_fixture[f"{tag}/loss_per_image_nats"], rtol=1e-5)
    sample = sample_from_discretized_mix_logistic(
        logits, dmol_fixture[f"{tag}/u_mix"], dmol_fixture[f"{tag}/u_logistic"])
    np.testing.assert_allclose(ops.convert_to_numpy(sample), dmol_fixture[f"{tag}/sample"],
                               rtol=1e-5, atol=1e-6)


def random_params(rng, nr_mix, channels, extreme=False):
    dist = DiscretizedMixLogistic(nr_mix, channels)
    p = rng.normal(size=dist.num_params).astype(np.float32)
    if extreme:  # means far outside [-1, 1], scales from e^-7 to e^5, near-saturated coefficients
        p = p * np.float32(6.0)
    return p


def joint_probabilities_rgb(params):
    """p(r, g, b) for all 256^3 values of one pixel, as a (256, 256, 256) float64 array."""
    g, b = np.meshgrid(LEVELS, LEVELS, indexing="ij")
    out = np.empty((256, 256, 256))
    for r in range(256):
        x = np.stack([np.full_like(g, LEVELS[r]), g, b], axis=-1)
        lp = discretized_mix_logistic_log_prob(x, np.broadcast_to(params, g.shape + params.shape))
        out[r] = np.exp(ops.convert_to_numpy(lp).astype(np.float64))
    return out


@pytest.mark.parametrize("extreme", [False, True])
def test_rgb_joint_sums_to_one(extreme):
    # Normalisation over all 256^3 values only holds if channel c's distribution depends on the
    # channels before c and not on c or later ones, so this also checks the coupling order.
    rng = np.random.RandomState(1 + extreme)
    params = random_params(rng, nr_mix=2, channels=3, extreme=extreme)
    joint = joint_probabilities_rgb(params)
    assert abs(joint.sum() - 1.0) < 1e-4
    # Marginal over (g, b) for each r is p(r); summing over b leaves p(r, g): both in [0, 1].
    assert np.all(joint.sum(axis=(1, 2)) <= 1.0 + 1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("extreme", [False, True])
def test_grayscale_probabilities_sum_to_one(seed, extreme):
    rng = np.random.RandomState(seed)
    params = random_params(rng, nr_mix=5, channels=1, extreme=extreme)
    lp = discretized_mix_logistic_log_prob(LEVELS[:, None], np.tile(params, (256, 1)))
    total = np.exp(ops.convert_to_numpy(lp).astype(np.float64)).sum()
    assert abs(total - 1.0) < 1e-4


def test_coupled_means_depend_only_on_earlier_channels():
    rng = np.random.RandomState(0)
    means = tf.constant(rng.normal(size=(3, 4)).astype(np.float32))
    coeffs = tf.constant(np.tanh(rng.normal(size=(3, 4))).astype(np.float32))
    x = tf.Variable(rng.uniform(-1, 1, size=(3, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        m = coupled_means(x, means, coeffs)
    jac = tape.jacobian(m, x).numpy()  # (3, 4, 3, 1): d mean[c, i] / d x[c']
    for c in range(3):
        for c_prime in range(3):
            dependent = np.abs(jac[c, :, c_prime, 0]).max() > 0
            assert dependent == (c_prime < c), (c, c_prime)


def logistic_cdf(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_bin_probabilities(mean, scale):
    """P(each of the 256 levels) under a logistic, edges open, in float64 (no approximation)."""
    upper = logistic_cdf((LEVELS.astype(np.float64) + 1 / 255 - mean) / scale)
    lower = logistic_cdf((LEVELS.astype(np.float64) - 1 / 255 - mean) / scale)
    upper[-1], lower[0] = 1.0, 0.0
    return upper - lower


def test_bits_per_dim_of_hand_built_mixture_matches_numpy():
    # Grayscale, M = 2: weights softmax([0.3, -0.4]), means 0.1 / -0.5, log-scales -2.5 / -1.5.
    logits, means, log_scales = [0.3, -0.4], [0.1, -0.5], [-2.5, -1.5]
    params = np.array(logits + means + log_scales, np.float32)
    values = np.array([0, 3, 100, 127, 128, 200, 255], np.uint8)
    weights = np.exp(logits) / np.exp(logits).sum()
    probs = sum(w * numpy_bin_probabilities(m, np.exp(s))
                for w, m, s in zip(weights, means, log_scales))
    expected_bpd = -np.log2(probs[values]).mean()
    x = to_float(values)[:, None]
    nats = -ops.convert_to_numpy(discretized_mix_logistic_log_prob(x, np.tile(params, (7, 1))))
    np.testing.assert_allclose(nats.mean() / math.log(2), expected_bpd, rtol=1e-5)


@pytest.mark.parametrize("log_scale", [-20.0, -7.0, 0.0, 8.0])
@pytest.mark.parametrize("mean", [-5.0, -1.0, 0.0, 1.0, 5.0])
def test_loss_and_gradients_finite_at_edges(log_scale, mean):
    nr_mix = 2
    x = tf.constant(to_float(np.array([[[[0, 255, 128]]], [[[255, 0, 1]]]], np.uint8)))
    l = np.zeros((2, 1, 1, 10 * nr_mix), np.float32)
    l[..., nr_mix:] = np.tile(np.repeat([mean, log_scale, 30.0], nr_mix), 3)
    l = tf.Variable(l)
    with tf.GradientTape() as tape:
        loss = discretized_mix_logistic_loss(x, l)
    grad = tape.gradient(loss, l)
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(grad.numpy()))


def bin_of(samples):
    return np.clip(np.round(samples * 127.5 + 127.5), 0, 255).astype(int)


def chi_square_p_value(observed, expected):
    keep = expected >= 5  # pool the sparse tail into one cell
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


def draw(dist, params, n, seed):
    rng = np.random.RandomState(seed)
    uniforms = [rng.uniform(1e-5, 1 - 1e-5, size=s).astype(np.float32)
                for s in dist.uniform_shapes((n,))]
    return ops.convert_to_numpy(dist.sample(np.tile(params, (n, 1)), uniforms))


def test_sampler_histogram_matches_probabilities_grayscale():
    dist = DiscretizedMixLogistic(3, channels=1)
    params = np.array([0.5, -0.2, 0.1, -0.6, 0.2, 0.7, -3.0, -2.5, -3.5], np.float32)
    n = 40000
    observed = np.bincount(bin_of(draw(dist, params, n, seed=0)[:, 0]), minlength=256)
    probs = np.exp(ops.convert_to_numpy(
        dist.log_prob(LEVELS[:, None], np.tile(params, (256, 1)))).astype(np.float64))
    assert chi_square_p_value(observed, probs * n) > 1e-3
    # The test can fail: the same samples against a shifted distribution are rejected.
    assert chi_square_p_value(observed, np.roll(probs, 3) * n) < 1e-6


def test_sampler_histogram_matches_probabilities_rgb():
    # Check the G channel given the sampled R (the coupling path) on the (R, G) marginal cells.
    dist = DiscretizedMixLogistic(2, channels=3)
    rng = np.random.RandomState(3)
    params = rng.normal(size=dist.num_params).astype(np.float32)
    params[2:] = np.tile(np.concatenate([[0.2, -0.3], [-1.5, -1.8], [1.0, -1.0]]), 3)
    n = 40000
    s = bin_of(draw(dist, params, n, seed=1))
    joint = joint_probabilities_rgb(params)
    for channel, marginal in ((0, joint.sum(axis=(1, 2))), (1, joint.sum(axis=(0, 2))),
                              (2, joint.sum(axis=(0, 1)))):
        observed = np.bincount(s[:, channel], minlength=256)
        assert chi_square_p_value(observed, marginal * n) > 1e-3, channel
