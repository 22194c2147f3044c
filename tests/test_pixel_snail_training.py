"""PixelSNAIL through the shared training loop and export: the same commands as PixelCNN++."""
import numpy as np
import pytest
from keras import ops

from pixel_cnn_pp.runtime import data
from pixel_cnn_pp.runtime.config import TrainConfig
from pixel_cnn_pp.runtime.runs import load_run
from conftest import random_images
from processes import in_one_process
from test_export import serve_in_fresh_process
from test_training import TINY, mirrored, seeded_trainer

SNAIL_FLAGS = ["--model=pixel_snail", "--dataset=digits", "--nr_resnet=1", "--nr_filters=8",
               "--nr_logistic_mix=2", "--attn_rep=1", "--batch_size=8", "--init_batch_size=16",
               "--steps_per_epoch=3", "--num_samples=2", "--max_epochs=1"]


@pytest.mark.parametrize("output", ["logistic_mixture", "bernoulli"])
def test_two_replicas_lower_the_loss(tmp_path, output):
    options = dict(TINY["model_options"], attn_rep=1, key_size=4, mixin_size=4, output=output)
    config = TrainConfig(**{**TINY, "model": "pixel_snail", "adam_epsilon": 1e-6,
                            "model_options": options})
    dataset = data.load("digits", binarize=output == "bernoulli")
    trainer = seeded_trainer(config, dataset, mirrored(2), str(tmp_path))
    trainer.restore_or_initialize()
    batch = next(iter(trainer.distribute(dataset.train, 0)))
    losses = [float(trainer.train_step(batch)) for _ in range(8)]
    assert trainer.replicas == 2 and losses[-1] < losses[0] * 0.9, losses


def test_mixed_bfloat16_trains_with_a_float32_loss(tmp_path):
    options = dict(TINY["model_options"], attn_rep=1, key_size=4, mixin_size=4,
                   dtype="mixed_bfloat16")
    config = TrainConfig(**{**TINY, "model": "pixel_snail", "model_options": options})
    trainer = seeded_trainer(config, data.load("digits"), mirrored(1), str(tmp_path),
                             log=lambda *_: None)
    trainer.restore_or_initialize()
    batch = next(iter(trainer.distribute(trainer.data.train, 0)))
    losses = [float(trainer.train_step(batch)) for _ in range(8)]
    assert trainer.model.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in trainer.model.trainable_variables)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] * 0.95, losses
    images = random_images((2, 8, 8, 1), seed=5)
    assert trainer.model.bits_per_dim(images).dtype == "float32"
    samples = ops.convert_to_numpy(trainer.sample(2, seed=1))
    assert samples.shape == (2, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 255


def test_train_eval_export_and_reload_in_a_fresh_process(tmp_path):
    trained, evaluated = in_one_process("train", [
        SNAIL_FLAGS + [f"--save_dir={tmp_path}"], [f"--save_dir={tmp_path}", "--mode=eval"]])
    assert trained["exit"] == 0 and evaluated["exit"] == 0, (trained, evaluated)
    assert "pixel_snail on digits" in trained["stdout"]
    assert "test bits/dim" in evaluated["stdout"]
    run = load_run(str(tmp_path))
    model = run.model
    assert run.metadata["model"] == "pixel_snail" and run.step == 3 and model.attn_rep == 1
    images = random_images((3, 8, 8, 1), seed=4)
    out, _ = serve_in_fresh_process({"snail": (tmp_path / "export" / "1", None, None)}, images,
                                    tmp_path)
    np.testing.assert_allclose(out["snail/bpd"], ops.convert_to_numpy(model.bits_per_dim(images)),
                               rtol=1e-5)
    np.testing.assert_array_equal(out["snail/a"], out["snail/b"])
    assert out["snail/a"].shape == (3, 8, 8, 1)
