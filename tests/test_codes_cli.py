"""train.py on code maps (`--dataset=codes --data_path=FILE.npz`): a class- and
code-map-conditioned PixelSNAIL prior trains, resumes, evaluates, samples code maps and exports,
all in one process; bad files and settings are refused in one line before any work."""
import re

import numpy as np
import pytest
import tensorflow as tf

from pixel_cnn_pp.errors import DataError
from pixel_cnn_pp.runtime import data
from processes import in_one_process

TINY = ["--model=pixel_snail", "--dataset=codes", "--nr_filters=8", "--nr_resnet=1",
        "--attn_rep=1", "--key_size=4", "--batch_size=16", "--init_batch_size=16",
        "--dropout_p=0", "--steps_per_epoch=3", "--noexport_at_end", "--num_samples=0"]


def write_codes(path, n=80, **changes):
    """A code-map file: 4x4 maps of 6 codes, each the 2x2 top map upsampled; labels 0..2."""
    rng = np.random.RandomState(0)
    top = rng.randint(0, 6, (n, 2, 2))
    codes = np.repeat(np.repeat(top, 2, 1), 2, 2)
    arrays = dict(train_codes=codes[:64], test_codes=codes[64:], train_condition=top[:64],
                  test_condition=top[64:], train_labels=rng.randint(0, 3, 64),
                  test_labels=rng.randint(0, 3, n - 64), num_codes=np.int64(8))
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


@pytest.fixture(scope="module")
def commands(tmp_path_factory):
    root = tmp_path_factory.mktemp("codes")
    good, run = write_codes(root / "codes.npz"), str(root / "run")
    bad_range = write_codes(root / "range.npz", num_codes=np.int64(4))
    cases = {
        "train": TINY + [f"--data_path={good}", f"--save_dir={run}", "--class_conditional",
                         "--max_epochs=1", "--export_at_end"],
        "resume": TINY + [f"--data_path={good}", f"--save_dir={run}", "--class_conditional",
                          "--max_epochs=2"],
        "eval": [f"--save_dir={run}", "--mode=eval", f"--data_path={good}"],
        "sample": [f"--save_dir={run}", "--mode=sample", f"--data_path={good}",
                   "--num_samples=5"],
        "score": [f"--save_dir={run}", "--mode=score", f"--data_path={good}"],
        "no data path": TINY + [f"--save_dir={root / 'x'}"],
        "codes out of range": TINY + [f"--data_path={bad_range}", f"--save_dir={root / 'y'}"],
        "mutation": TINY + [f"--data_path={good}", f"--save_dir={root / 'z'}",
                            "--mutation_rate=0.1"],
        "bernoulli": TINY + [f"--data_path={good}", f"--save_dir={root / 'w'}",
                             "--output=bernoulli"],
        "categorical images": ["--dataset=digits", "--output=categorical", "--num_codes=4",
                               f"--save_dir={root / 'v'}", "--max_epochs=1"],
    }
    results = in_one_process("train", list(cases.values()), timeout=600)
    return dict(zip(cases, results)), root


def test_a_conditioned_prior_trains_resumes_evaluates_samples_and_exports(commands):
    results, root = commands
    for name in ("train", "resume", "eval", "sample"):
        assert results[name]["exit"] == 0, (name, results[name])
    assert "pixel_snail on codes (4, 4, 1)" in results["train"]["stdout"]
    assert "resumed from" in results["resume"]["stdout"]
    assert "test bits/dim" in results["eval"]["stdout"]
    drawn = np.load(root / "run" / "samples" / "samples_seed_1.npy")
    assert drawn.shape == (5, 4, 4) and drawn.dtype == np.int32
    assert drawn.min() >= 0 and drawn.max() < 8  # the file's num_codes
    sample = tf.saved_model.load(str(root / "run" / "export" / "1")).signatures["sample"]
    condition = np.load(root / "codes.npz")["test_condition"][:2].astype(np.int32)
    served = sample(num_samples=tf.constant(2), seed=tf.constant(1, tf.int64),
                    condition=tf.constant(condition), class_label=tf.constant(1))["codes"]
    assert served.shape == (2, 4, 4) and served.dtype == tf.int32


@pytest.mark.parametrize("name, message", [
    ("score", "--mode=score works on images"),
    ("no data path", "--dataset=codes needs --data_path=FILE.npz"),
    ("codes out of range", "lie in [0, 5], outside [0, 4) (--num_codes=4)"),
    ("mutation", "--mutation_rate=0.1 perturbs image levels"),
    ("bernoulli", "--output=bernoulli: --dataset=codes holds code maps"),
    ("categorical images", "use --dataset=codes (--dataset=digits holds images)"),
])
def test_bad_settings_are_one_line(commands, name, message):
    result = commands[0][name]
    assert isinstance(result["exit"], str) and message in result["exit"], result
    assert result["exit"].startswith("train.py: error: ") and "\n" not in result["exit"]


@pytest.mark.parametrize("changes, message", [
    (dict(test_codes=None), "has no 'test_codes' array"),
    (dict(train_codes=np.zeros((64, 4, 4), np.float32)),
     "must be a non-empty (N, H, W) integer"),
    (dict(test_codes=np.zeros((16, 2, 2), np.int32)),
     "train_codes are (4, 4) maps but test_codes (2, 2)"),
    (dict(test_condition=np.zeros((3, 2, 2), np.int32)),
     "one (Hc, Wc) code map or (Hc, Wc, D) float map per code map (16)"),
    (dict(test_condition=np.zeros((16, 2, 2, 1), np.float32)), "differ"),
    (dict(test_labels=None), "has labels for one split only"),
    (dict(train_condition=-np.ones((64, 2, 2), np.int32)), "condition codes of"),
])
def test_bad_code_files_are_refused(tmp_path, changes, message):
    path = write_codes(tmp_path / "f.npz", **changes)
    with pytest.raises(DataError, match=re.escape(message)):
        data.load("codes", data_path=path)
