"""Training-step throughput of the shared Trainer (forward + backward + original Adam + EMA),
variants side by side in one run, optionally beside an earlier commit and the original code.

    python bench/train_throughput.py --preset=cifar10 --batch_size=16 --steps=3 \
        --variants=float32,no-onednn,xla --baseline=HEAD~1 --original

Each measurement runs in its own subprocess (its own peak memory, its own TensorFlow settings):

* `--variants`: `float32` is the project's defaults (tf.function, oneDNN's graph rewrites on);
  `no-onednn` turns those off (TF_ENABLE_ONEDNN_OPTS=0, TensorFlow's own default on CPUs
  without AVX-512); `xla` adds `jit_compile=True`; `bf16` the `mixed_bfloat16` policy;
  `backend-filter-grad` and `products-filter-grad` force `model/conv.py`'s filter gradient (the
  backend's own, or the matrix products) where the others take train.py's choice for the
  machine (`hardware.choose_filter_gradient`); `remat` recomputes every gated resnet in the
  backward pass (`--remat`).
  A TF_ENABLE_ONEDNN_OPTS set by the caller applies to the runs that do not set their own, and
  their labels say so.
* `--baseline=REV`: the same variants on the code of git revision REV (exported to a temporary
  folder), run as that code ran by default: the before of a before/after in one run.
* `--original`: the original TF1 code (`../shared/baseline/time_original.py`, its own venv:
  see that folder's README), with TensorFlow's defaults and (`--original_onednn`) with oneDNN's
  rewrites on. One change to how its graph is built, none to what it computes: PixelSNAIL's
  data-dependent init runs inside its variables' initialisers, and for each new variable
  TensorFlow copies the whole initialiser graph upstream of it, reading earlier variables
  through `initialized_value` (`variables._try_guard_against_uninitialized_dependencies`, one op
  cache per variable). At the published size that was 14.8 GiB after 31 minutes, unfinished;
  with one op cache per graph each op is copied once (measured on a small
  h12_noup_smallkey: the same initial values and loss to float32 rounding, 10.6k instead of
  51.4k graph ops). The training step's graph does not go through it.
* `--rounds=N`: all rows N times over, in alternation (original, baseline, project, original,
  ...). This machine's speed drifts by up to 40% over minutes, so rows timed minutes apart
  disagree; with rounds each row's time is its median over the rounds, and the ratio to the
  original is also given per round (neighbouring runs) with the median of those ratios. A run
  stopped by Ctrl-C or SIGTERM (a time limit) still prints the table of its complete rounds.

Prints a table (bench/harness.py) of seconds per step (median after one traced warm-up step),
images/s, the ratio to the original (TF defaults) and to the first row, warm-up time and peak
resident memory.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

ENV_AT_START = dict(os.environ)  # before the set-up below sets TensorFlow's variables

import harness  # noqa: E402

harness.setup(onednn=True)  # as train.py runs, before TensorFlow starts (in the workers)
ROOT = harness.ROOT

from absl import app, flags  # noqa: E402

ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
# Preset: the original's repository, model spec and options (as `time_original.py` builds
# them) and its published batch size.
ORIGINALS = {
    "cifar10": dict(repo="pixel-cnn", spec="model_spec", batch=16, options=dict(
        nr_resnet=5, nr_filters=160, nr_logistic_mix=10, resnet_nonlinearity="concat_elu")),
    "snail_cifar10": dict(repo="pixelsnail", spec="h12_noup_smallkey_spec", batch=8, options=dict(
        nr_resnet=4, nr_filters=256, nr_logistic_mix=10, resnet_nonlinearity="elu")),
}
# Trainer settings by worker name. Explicit values: a preset's own choice must not leak in.
SETTINGS = {
    "float32": dict(jit_compile=False, mixed_precision="float32"),
    "xla": dict(jit_compile=True, mixed_precision="float32"),
    "bf16": dict(jit_compile=False, mixed_precision="mixed_bfloat16"),
    "xla+bf16": dict(jit_compile=True, mixed_precision="mixed_bfloat16"),
    # Gradient checkpointing: every gated resnet recomputed in the backward pass.
    "remat": dict(jit_compile=False, mixed_precision="float32", remat=True),
    # The backend's own filter gradient for the stride-1 convolutions (model/conv.py).
    "backend-filter-grad": dict(jit_compile=False, mixed_precision="float32",
                                filter_gradient="backend"),
    # The matrix-product filter gradient whatever the machine.
    "products-filter-grad": dict(jit_compile=False, mixed_precision="float32",
                                 filter_gradient="products"),
}
# Variant: (worker name, environment). Worker names are those of earlier versions of this
# script too, so that --baseline runs the old code's own worker.
VARIANTS = {**{name: (name, {}) for name in SETTINGS}, "no-onednn": ("float32", {ONEDNN: "0"})}

flags.DEFINE_string("preset", "cifar10", "Preset whose model is timed (PixelSNAIL's included).")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("steps", 3, "Timed steps after one warm-up step.")
flags.DEFINE_list("variants", ["float32", "no-onednn", "xla"],
                  f"Variants to compare: {', '.join(VARIANTS)}.")
flags.DEFINE_string("baseline", None, "A git revision whose code runs the same variants.")
flags.DEFINE_bool("original", False, "Also time the original TF1 code (presets "
                  f"{', '.join(ORIGINALS)} at their published batch sizes).")
flags.DEFINE_bool("original_onednn", True, "With --original: also time it with oneDNN's "
                  "graph rewrites on (TF_ENABLE_ONEDNN_OPTS=1).")
flags.DEFINE_integer("rounds", 1, "Time every row this many times, in alternation.")
flags.DEFINE_string("original_python", "/tmp/tf1env/bin/python",
                    "Python of the original's TF1 venv (../shared/baseline/README.md).")
flags.DEFINE_string("original_script",
                    os.path.join(os.path.dirname(ROOT), "shared", "baseline", "time_original.py"),
                    "The original's timing script (its `time_train` times the step).")
flags.DEFINE_integer("nr_resnet", 0, "Override the preset's nr_resnet (0: keep).")
flags.DEFINE_integer("nr_filters", 0, "Override the preset's nr_filters (0: keep).")
flags.DEFINE_string("_worker", None, "Internal: run one variant and print its JSON.")
F = flags.FLAGS


def run_variant(name):
    import tensorflow as tf

    from pixel_cnn_pp.model import conv
    from pixel_cnn_pp.runtime import hardware

    settings = dict(SETTINGS[name])
    hardware.choose_filter_gradient()  # train.py's choice, unless the variant forces one
    conv.FILTER_GRADIENT = settings.pop("filter_gradient", conv.FILTER_GRADIENT)
    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters") if getattr(F, k)}
    trainer, batch = harness.preset_trainer(F.preset, F.batch_size, **overrides, **settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # build and DDI's peak
    start = time.time()
    first_loss = float(trainer.train_step(batch))
    warmup = time.time() - start
    times = []
    for _ in range(F.steps):
        start = time.time()
        float(trainer.train_step(batch))
        times.append(time.time() - start)
    print(json.dumps({"step": float(np.median(times)), "warmup": warmup,
                      "params": trainer.model.count_params(), "loss": first_loss,
                      "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "rss_before_steps_gib": before,
                      "versions": f"TF {tf.__version__}"}))


def _env(extra):
    """The caller's environment with the run's own settings on top (the run's win)."""
    return {**ENV_AT_START, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _label(label, extra_env):
    """The row's label, naming the caller's TF_ENABLE_ONEDNN_OPTS where the run inherited it."""
    if ONEDNN in ENV_AT_START and ONEDNN not in extra_env:
        return f"{label} ({ONEDNN}={ENV_AT_START[ONEDNN]} from the environment)"
    return label


def _ours(name, code_root, passthrough):
    script = os.path.join(code_root, "bench", "train_throughput.py")
    worker, extra_env = VARIANTS[name]
    out = subprocess.run([sys.executable, script, *passthrough, f"--_worker={worker}"],
                         capture_output=True, text=True, cwd=code_root,
                         env=_env(extra_env))
    if out.returncode:
        print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# Times the original's step at the published batch size with no cap on its length: the
# script's own PixelSNAIL command gives up on a batch whose step takes over 60 s.
_ORIGINAL_STEP = """
import json, sys
from tensorflow.python.ops import variables
caches = {}
def guard(name, initial_value):  # TensorFlow's, with one op cache per graph (see the docstring)
    if variables._has_cycle(initial_value.op, state={}):
        return initial_value
    cache = caches.setdefault(id(initial_value.graph), {})
    return variables._safe_initial_value_from_tensor(name, initial_value, op_cache=cache)
variables._try_guard_against_uninitialized_dependencies = guard
sys.path.insert(0, sys.argv[1])
import time_original
res = time_original.time_train(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
                               int(sys.argv[5]), int(sys.argv[6]))[0]
time_original.record(res)
"""


def _original(extra_env):
    """The original's training step at the paper configuration and published batch size."""
    original = ORIGINALS[F.preset]
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        done = subprocess.run(
            [F.original_python, "-c", _ORIGINAL_STEP, os.path.dirname(F.original_script),
             original["repo"], original["spec"], json.dumps(original["options"]), str(F.batch_size),
             str(F.steps)],
            capture_output=True, text=True, cwd=ROOT,
            env=_env({**extra_env, "TIMING_OUT": out.name}))
        lines = [json.loads(line) for line in out.read().splitlines() if line.strip()]
    lines = [r for r in lines if r.get("batch") == F.batch_size and "median_step_s" in r]
    if done.returncode or not lines:
        print(f"original: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    r = lines[0]
    return {"step": r["median_step_s"], "warmup": r["warmup_s"][0], "params": r["num_params"],
            "loss": float("nan"), "rss_gib": float("nan"), "versions": f"TF {r['machine']['tf']}"}


def main(argv):
    del argv
    if F._worker:
        return run_variant(F._worker)
    unknown = [v for v in F.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"bench: error: --variants={','.join(unknown)} not in {', '.join(VARIANTS)}")
    published = ", ".join(f"--preset={p} --batch_size={o['batch']}" for p, o in ORIGINALS.items())
    if F.original and (ORIGINALS.get(F.preset, {}).get("batch") != F.batch_size
                       or overrides_text()):
        sys.exit(f"bench: error: --original times the published configurations only: "
                 f"{published}, no --nr_resnet/--nr_filters")
    if F.original and not os.path.exists(F.original_python):
        sys.exit(f"bench: error: --original_python={F.original_python} does not exist; "
                 "see ../shared/baseline/README.md")
    passthrough = [a for a in sys.argv[1:]
                   if not a.startswith(("--variants", "--baseline", "--original", "--nooriginal",
                                        "--rounds"))]
    if F.rounds < 1:
        sys.exit(f"bench: error: --rounds={F.rounds} must be at least 1")
    rows = []  # (label, zero-argument run returning a result dict or None)
    if F.original:
        envs = [("original TF1 code, TF defaults", {})]
        if F.original_onednn:
            envs.append(("original TF1 code, oneDNN rewrites on", {ONEDNN: "1"}))
        rows += [(_label(label, env), lambda env=env: _original(env)) for label, env in envs]
    trees = [("", ROOT)]
    if F.baseline:
        trees.insert(0, (f"{F.baseline}: ", harness.tree_at(F.baseline)))
    rows += [(_label(f"{prefix}{name}", VARIANTS[name][1]),
              lambda name=name, tree=tree: _ours(name, tree, passthrough))
             for prefix, tree in trees for name in F.variants]
    timed = {label: [] for label, _ in rows}  # label -> one result per round (None: failed)
    # A run stopped (Ctrl-C, or SIGTERM from a time limit) still reports its complete rounds.
    signal.signal(signal.SIGTERM, _interrupt)
    rounds = 0
    try:
        for round_ in range(F.rounds):
            for label, run in rows:
                timed[label].append(run())
                print(f"round {round_ + 1}/{F.rounds}, {label}: {timed[label][-1]}", flush=True)
            rounds += 1
    except KeyboardInterrupt:
        print(f"bench: stopped during round {rounds + 1}; reporting {rounds} complete rounds",
              flush=True)
        if not rounds:
            sys.exit("bench: error: stopped before one round was complete")
        timed = {label: results[:rounds] for label, results in timed.items()}
    finally:
        if F.baseline:
            shutil.rmtree(trees[0][1], ignore_errors=True)
    report(timed, rounds)


def report(timed, rounds):
    """Prints the table of `rounds` complete rounds; `timed` {row label: one result per round},
    in the rows' order (the original's first where timed)."""
    runs = [(label, _merged(results)) for label, results in timed.items()]
    results = [(label, r) for label, r in runs if r]
    if not results:
        sys.exit("bench: error: every run failed")
    first = results[0][1]["step"]
    original = runs[0][1]["step"] if F.original and runs[0][1] else None
    any_result = results[-1][1]
    versions = ", ".join(sorted({r["versions"] for _, r in results}))
    machine = f"{harness.machine_header(frameworks=False)}; the runs on {versions}"
    what = (f"{F.preset}{' with ' + overrides_text() if overrides_text() else ''}, "
            f"{any_result['params']:,} parameters, batch {F.batch_size}")
    lines = ["| run | s/step (median) | images/s | time / original's (TF defaults) "
             "| speed vs first row | first step (trace/compile) | peak RSS (before the steps) "
             "| first loss (nats) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in results:
        vs_original = f"{r['step'] / original:.2f}x" if original else "n/a"
        lines.append(f"| {label} | {r['step']:.2f} s | {F.batch_size / r['step']:.2f} | "
                     f"{vs_original} | {first / r['step']:.2f}x | {r['warmup']:.0f} s | "
                     f"{r['rss_gib']:.1f} GiB ({r.get('rss_before_steps_gib', float('nan')):.1f}) | "
                     f"{r['loss']:.1f} |")
    stopped = f" (stopped after {rounds} of {F.rounds})" if rounds < F.rounds else ""
    if rounds > 1:
        lines += ["", f"Each row: the median of {rounds} rounds{stopped}. Per round, in order:",
                  "",
                  "| run | s/step by round |" + (" time / original's by round (median) |"
                                                   if original else ""),
                  "|---|---|" + ("---|" if original else "")]
        reference = next(iter(timed.values())) if original else None
        for label, results in timed.items():
            steps = ", ".join(f"{r['step']:.2f}" if r else "failed" for r in results)
            row = f"| {label} | {steps} |"
            if original:
                ratios = [r["step"] / o["step"] for r, o in zip(results, reference) if r and o]
                row += (f" {', '.join(f'{x:.2f}' for x in ratios)} "
                        f"({np.median(ratios):.2f}x) |" if ratios else " n/a |")
            lines.append(row)
    elif stopped:
        lines += ["", f"One round{stopped}."]
    harness.report(what, lines, machine)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _merged(results):
    """One result of a row's rounds: the median step; the other fields from the first run
    (warm-up, memory and first loss do not drift as the step time does)."""
    done = [r for r in results if r]
    if not done:
        return None
    return {**done[0], "step": float(np.median([r["step"] for r in done]))}


def overrides_text():
    return ", ".join(f"{k}={getattr(F, k)}" for k in ("nr_resnet", "nr_filters") if getattr(F, k))


if __name__ == "__main__":
    app.run(main)
