"""The port against the ORIGINAL TF1 code's numbers (tests/fixtures/pixelcnn_small.npz).

This is the proof that the port is faithful; tolerances are the fixture's (1e-4 relative at most).
"""

import pytest

from pixel_cnn_pp.model.tf1_names import tf1_variable_names
from conftest import small_pixelcnn
from fixture_checks import (assert_ddi_matches, assert_output_and_loss,
                            assert_per_image_loss_and_gradients)


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
    fx = pixelcnn_fixture
    assert_ddi_matches(*model_and_names, fx, lambda n: fx.get(f"pre_ddi/{n}", fx[f"var/{n}"]))


@pytest.mark.parametrize("weights", ["train", "eval"])
def test_network_output_and_loss_match_original(pixelcnn_fixture, model_and_names, weights):
    assert_output_and_loss(*model_and_names, pixelcnn_fixture, weights)


def test_per_image_loss_and_gradients_match_original(pixelcnn_fixture, model_and_names):
    assert_per_image_loss_and_gradients(*model_and_names, pixelcnn_fixture)
