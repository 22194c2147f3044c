"""train.py --mode=score and --mode=complete on the trained tiny run, with a background run
trained with --mutation_rate and --l2_weight, all in one process; and their one-line errors."""
import csv
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_RUN, random_images
from processes import TINY_FLAGS, in_one_process


def read_csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


@pytest.fixture(scope="module")
def commands(tiny_run, tmp_path_factory):
    """{name: result} of every command line, run in one process, and the folder they used."""
    root = tmp_path_factory.mktemp("scores")
    small = root / "small_images"  # a folder of 4x4 images: another shape than the digits'
    small.mkdir()
    for k, image in enumerate(random_images((30, 4, 4, 1), seed=1)):
        (small / f"{k:02d}.png").write_bytes(tf.io.encode_png(image).numpy())
    old = root / "old"  # a run whose run.json predates the background settings
    shutil.copytree(tiny_run, old)
    meta = json.loads((old / "run.json").read_text())
    for key in ("mutation_rate", "l2_weight"):
        del meta["train_config"][key]
    (old / "run.json").write_text(json.dumps(meta))
    copy = root / "run"  # score and complete write into the run: not into the shared one
    shutil.copytree(tiny_run, copy)
    run, bg, bg_small = str(copy), str(root / "bg"), str(root / "bg_small")
    cases = {
        "background": TINY_FLAGS + ["--max_epochs=1", "--mutation_rate=0.2", "--l2_weight=1e-3",
                                    f"--save_dir={bg}"],
        "score": [f"--save_dir={run}", "--mode=score", f"--background_dir={bg}",
                  "--ood_dataset=noise", f"--ood_data_dir={root}"],
        "complete": [f"--save_dir={run}", "--mode=complete", "--num_samples=3",
                     "--completions=2"],
        # accepted as the same run (the checks come before any training; none is left to do)
        "old run resumes": TINY_RUN + [f"--save_dir={old}"],
        "background of another shape": TINY_FLAGS + [
            "--max_epochs=1", "--dataset=folder", f"--data_dir={small}", "--batch_size=2",
            "--init_batch_size=4", f"--save_dir={bg_small}"],
        "refused background": [f"--save_dir={run}", "--mode=score",
                               f"--background_dir={bg_small}"],
        "missing background": [f"--save_dir={run}", "--mode=score",
                               f"--background_dir={root / 'none'}"],
        "ood of another shape": [f"--save_dir={run}", "--mode=score", "--ood_dataset=folder",
                                 f"--ood_data_dir={small}"],
        "unknown ood": [f"--save_dir={run}", "--mode=score", "--ood_dataset=svhn"],
        "too many known rows": [f"--save_dir={run}", "--mode=complete", "--known_rows=9"],
    }
    results = in_one_process("train", list(cases.values()), timeout=600)
    return dict(zip(cases, results)), copy, root


def test_a_background_run_records_its_settings(commands):
    results, _, root = commands
    assert results["background"]["exit"] == 0, results["background"]
    config = json.loads((root / "bg" / "run.json").read_text())["train_config"]
    assert config["mutation_rate"] == 0.2 and config["l2_weight"] == 1e-3


def test_score_writes_finite_csvs_and_the_metrics_of_their_columns(commands):
    from sklearn.metrics import average_precision_score, roc_auc_score
    results, run, _ = commands
    assert results["score"]["exit"] == 0, results["score"]
    folder = run / "scores"
    test, noise = read_csv(folder / "test.csv"), read_csv(folder / "uniform_noise.csv")
    assert len(test["index"]) == 297 and len(noise["index"]) == 297
    assert set(test) == {"index", "label", "bits_per_dim", "log_likelihood",
                         "log_likelihood_ratio", "complexity"}
    assert all(np.isfinite(v).all() for v in list(test.values()) + list(noise.values()))
    np.testing.assert_allclose(test["bits_per_dim"],
                               -test["log_likelihood"] / (np.log(2) * 64), rtol=1e-5)
    with open(folder / "metrics_uniform_noise.csv") as f:
        table = {r["score"]: r for r in csv.DictReader(f)}
    assert set(table) == {"likelihood", "likelihood_ratio", "complexity"}, table
    is_ood = np.r_[np.zeros(297), np.ones(297)]
    for name, column, sign in (("likelihood", "bits_per_dim", 1),
                               ("likelihood_ratio", "log_likelihood_ratio", -1),
                               ("complexity", "complexity", 1)):
        score = sign * np.r_[test[column], noise[column]]
        assert abs(float(table[name]["auroc"]) - roc_auc_score(is_ood, score)) < 1e-5, name
        assert abs(float(table[name]["auprc"]) - average_precision_score(is_ood, score)) < 1e-5
    assert float(table["likelihood"]["auroc"]) > 0.9  # noise is far from the digits
    assert (folder / "test_heatmaps.png").stat().st_size > 0
    assert "AUROC, AUPRC, FPR at 80% TPR" in results["score"]["stdout"]


def test_complete_keeps_the_top_rows_of_test_images(commands):
    results, run, _ = commands
    assert results["complete"]["exit"] == 0, results["complete"]
    grid = np.load(run / "samples" / "completions_seed_1.npy")
    assert grid.shape == (3, 4, 8, 8, 1) and grid.dtype == np.uint8
    originals, given, completions = grid[:, 0], grid[:, 1], grid[:, 2:]
    np.testing.assert_array_equal(given[:, :4], originals[:, :4])
    assert (given[:, 4:] == 128).all()
    np.testing.assert_array_equal(completions[:, :, :4], np.repeat(originals[:, None, :4], 2, 1))
    assert not np.array_equal(completions[:, 0], completions[:, 1])  # two seeds


def test_a_run_from_before_the_background_settings_resumes(commands):
    result = commands[0]["old run resumes"]
    assert result["exit"] == 0, result
    assert "resumed from" in result["stdout"] and "ckpt-4: step 4, epoch 2" in result["stdout"]


@pytest.mark.parametrize("name,message", [
    ("refused background", "models images of shape (4, 4, 1); the model's are (8, 8, 1)"),
    ("missing background", "holds no training run (run.json missing)"),
    ("ood of another shape", "--ood_dataset=folder has images of shape (4, 4, 1); the model "
                             "takes (8, 8, 1)"),
    ("unknown ood", "--ood_dataset='svhn' is not one of"),
    ("too many known rows", "--known_rows=9 exceeds the image height 8"),
])
def test_bad_scoring_input_is_one_line(commands, name, message):
    result = commands[0][name]
    assert isinstance(result["exit"], str) and message in result["exit"], result
    assert result["exit"].startswith("train.py: error: ") and "\n" not in result["exit"]
