"""The fresh processes of the suite: train.py and export.py as users run them, and several
command lines in one process.

A process costs about 5 s of CPU before it does anything (importing TensorFlow and Keras), so
command lines that do little work share one process (`in_one_process`); runs that do work get
their own, as users run them."""
import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).parent.parent
# Every module of the portable packages (the packages themselves included), as import names.
PORTABLE = sorted(
    ".".join(part for part in path.relative_to(REPO).with_suffix("").parts if part != "__init__")
    for folder in ("pixel_cnn_pp", "pixel_cnn_pp/model", "pixel_snail")
    for path in (REPO / folder).glob("*.py"))
# A PixelCNN++ that trains in seconds on the embedded digits; no sample grids at checkpoints
# (tracing the sampler costs ~12 s a run: the demo test and the sampling tests cover them).
TINY_FLAGS = ["--dataset=digits", "--nr_resnet=1", "--nr_filters=8", "--nr_logistic_mix=2",
              "--batch_size=8", "--init_batch_size=16", "--steps_per_epoch=3", "--num_samples=0",
              "--dropout_p=0.2", "--lr_decay=1.0", "--noexport_at_end"]


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), **extra)


def run_train(args, timeout=300, **popen):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *args], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **popen)


def run_export(args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "export.py"), *args], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def last_line(result):
    return result.stderr.strip().splitlines()[-1]


_IN_ONE_PROCESS = r"""
import contextlib, io, json, sys
from absl import flags
script, cases = sys.argv[1], json.loads(sys.argv[2])
module = __import__(script)
out = []
for args in cases:
    flags.FLAGS.unparse_flags()
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            argv = flags.FLAGS([script + ".py", *args])
            module.main(argv)
        code = 0
    except flags.Error as e:  # what absl's app.run prints for a flag it cannot parse
        code = f"FATAL Flags parsing error: {e}"
    except SystemExit as e:
        code = e.code or 0
    out.append({"exit": code, "stdout": stdout.getvalue()})
print("CASES" + json.dumps(out))
"""


def in_one_process(script, cases, timeout=300):
    """Run `script` ("train" or "export")'s `main` once per argument list of `cases`, in order,
    in one fresh process, each after a fresh parse of the flags; returns per case {"exit": what
    main passed to sys.exit (0, or the one-line error the script prints), "stdout": its output}.
    For command lines that do little work (refusals, eval or sampling of a tiny run): one
    process start instead of one each."""
    result = subprocess.run([sys.executable, "-c", _IN_ONE_PROCESS, script, json.dumps(cases)],
                            env=_env(), cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0 and "CASES" in result.stdout, result.stderr[-3000:]
    return json.loads(result.stdout.split("CASES", 1)[1])
