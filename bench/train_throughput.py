"""Training-step throughput of the shared Trainer (forward + backward + original Adam + EMA),
variants side by side in one run.

    python bench/train_throughput.py --preset=cifar10 --batch_size=16 --steps=3 \
        --variants=float32,xla,bf16,xla+bf16

Each variant runs in its own subprocess (so peak memory is its own): `float32` is tf.function,
`xla` adds `jit_compile=True`, `bf16` the `mixed_bfloat16` policy. Prints a table of seconds per
step (median after one traced warm-up step), images/s, warm-up time and peak resident memory,
with the ratio to the first variant, and appends it to bench/RESULTS.md with the command,
machine and versions.
"""
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from bench.harness import record  # noqa: E402

# Explicit values: a preset's own choice (cifar10 sets jit_compile) must not leak in.
VARIANTS = {"float32": dict(jit_compile=False, mixed_precision="float32"),
            "xla": dict(jit_compile=True, mixed_precision="float32"),
            "bf16": dict(jit_compile=False, mixed_precision="mixed_bfloat16"),
            "xla+bf16": dict(jit_compile=True, mixed_precision="mixed_bfloat16")}

flags.DEFINE_string("preset", "cifar10", "Preset whose model is timed (PixelSNAIL's included).")
flags.DEFINE_integer("batch_size", 16, "Images per step.")
flags.DEFINE_integer("steps", 3, "Timed steps after one warm-up step.")
flags.DEFINE_list("variants", ["float32", "xla", "bf16", "xla+bf16"],
                  f"Variants to compare: {', '.join(VARIANTS)}.")
flags.DEFINE_integer("nr_resnet", 0, "Override the preset's nr_resnet (0: keep).")
flags.DEFINE_integer("nr_filters", 0, "Override the preset's nr_filters (0: keep).")
flags.DEFINE_string("_worker", None, "Internal: run one variant and print its JSON.")
F = flags.FLAGS


def run_variant(name):
    import numpy as np
    import tensorflow as tf

    from bench.harness import preset_trainer

    overrides = {k: getattr(F, k) for k in ("nr_resnet", "nr_filters") if getattr(F, k)}
    trainer, batch = preset_trainer(F.preset, F.batch_size, **overrides, **VARIANTS[name])
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
                      "versions": f"TF {tf.__version__}"}))


def main(argv):
    del argv
    if F._worker:
        return run_variant(F._worker)
    unknown = [v for v in F.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"bench: error: --variants={','.join(unknown)} not in {', '.join(VARIANTS)}")
    import keras
    results = {}
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--variants")]
    for name in F.variants:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *passthrough,
                              f"--_worker={name}"], capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{name}: {results[name]}", flush=True)
    if not results:
        sys.exit("bench: error: every variant failed")
    base = results[next(iter(results))]["step"]
    any_result = next(iter(results.values()))
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, {any_result['versions']}, "
               f"Keras {keras.__version__}")
    command = "python bench/train_throughput.py " + " ".join(sys.argv[1:])
    lines = [f"\n`{command}` ({machine}, {time.strftime('%Y-%m-%d')}): "
             f"{F.preset}{' with ' + str(overrides_text()) if overrides_text() else ''}, "
             f"{any_result['params']:,} parameters, batch {F.batch_size}\n",
             "| variant | s/step (median) | images/s | vs first | first step (trace/compile) "
             "| peak RSS | first loss (nats) |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['step']:.2f} s | {F.batch_size / r['step']:.2f} | "
                     f"{base / r['step']:.2f}x | {r['warmup']:.0f} s | {r['rss_gib']:.1f} GiB | "
                     f"{r['loss']:.1f} |")
    text = "\n".join(lines) + "\n"
    record(text)


def overrides_text():
    return ", ".join(f"{k}={getattr(F, k)}" for k in ("nr_resnet", "nr_filters") if getattr(F, k))


if __name__ == "__main__":
    app.run(main)
