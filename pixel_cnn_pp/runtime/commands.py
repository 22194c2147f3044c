"""What train.py does, one function per mode: `train` a run, `evaluate`, `sample`, `score` or
`complete` with a trained model (a run's EMA weights, or a checkpoint of the original TF1
code); `run` dispatches.

Each input file is read once and what was read is passed on: run.json (`runs.read_run`) to
`runs.load_run`, a TF1 checkpoint (`tf1_checkpoint.read`, by the caller that took the
architecture from it) to the model or the trainer that loads its weights.
"""
import dataclasses
import os

import keras
import numpy as np

from pixel_cnn_pp.errors import CheckpointError, ConfigError
from pixel_cnn_pp.runtime import (atomic, data, distribute, runs, samples, scores, tf1_checkpoint,
                                  trainer)

MODES = ("train", "eval", "sample", "score", "complete")
SPLITS = ("test", "train")


@dataclasses.dataclass
class Options:
    """Where and how to run, besides the run's settings (a TrainConfig); train.py's flags of
    the same names."""
    mode: str = "train"
    save_dir: str = ""
    dataset: str = "digits"
    binarize: bool = False
    data_dir: str = None
    data_path: str = None  # the .npz file of --dataset=codes
    tfds_data_dir: str = None
    strategy: str = "mirrored"
    cpu_replicas: int = 0  # 0: the strategy's own devices
    global_batch_size: int = 0  # 0: --batch_size per replica
    eval_split: str = "test"
    allow_changed_hparams: bool = False
    export_at_end: bool = True
    background_dir: str = None  # --mode=score: a background run, for likelihood ratios
    ood_dataset: str = None  # --mode=score: an out-of-distribution set to detect
    ood_data_dir: str = None  # its folder, for --ood_dataset=folder
    known_rows: int = -1  # --mode=complete: rows given (-1: the top half)
    completions: int = 3  # --mode=complete: completions per image

    def __post_init__(self):
        for name, choices in (("mode", MODES), ("eval_split", SPLITS)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"--{name}={getattr(self, name)!r} is not one of "
                                  f"{', '.join(choices)}")
        for name in ("global_batch_size", "cpu_replicas"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name}={getattr(self, name)} must be >= 0")
        if self.completions < 1:
            raise ConfigError(f"--completions={self.completions} must be >= 1")


@dataclasses.dataclass
class Setup:
    """What every mode starts from: the strategy, the global batch, the data."""
    strategy: object
    global_batch: int
    dataset: object


def run(config, options, tf1=None, log=print):
    """Do `options.mode` with `config` (a TrainConfig). `tf1`: the `Tf1Checkpoint` of
    `config.tf1_checkpoint`, read by the caller (None: read here where needed). Returns the
    mode's result: the last test bits/dim, the evaluated bits/dim, or the sample grid's path."""
    if options.mode in ("sample", "complete") and config.num_samples < 1:
        raise ConfigError(f"--num_samples={config.num_samples} must be >= 1 with "
                          f"--mode={options.mode}")
    if config.tf1_checkpoint and tf1 is None:
        tf1 = tf1_checkpoint.read(config.tf1_checkpoint)
    if options.mode != "eval":  # training and sampling write into it
        atomic.check_writable_dir(options.save_dir, "save_dir", CheckpointError)
    strategy = _strategy(options)
    replicas = strategy.num_replicas_in_sync
    if options.global_batch_size:
        if options.global_batch_size % replicas:
            raise ConfigError(f"--global_batch_size={options.global_batch_size} cannot be split "
                              f"evenly over {replicas} replicas")
        config.batch_size = options.global_batch_size // replicas
    keras.utils.set_random_seed(config.seed)  # weights, dropout: a rerun is identical
    if options.mode == "train":
        setup = Setup(strategy, config.batch_size * replicas, _dataset(options, tf1, config))
        return train(config, options, setup, tf1, log)
    run_json = None if tf1 else runs.read_run(options.save_dir)
    if run_json:  # the model's own data, whatever the flags say
        options = dataclasses.replace(options, dataset=run_json["dataset"],
                                      binarize=run_json["binarize"])
    setup = Setup(strategy, config.batch_size * replicas, _dataset(options, tf1, config))
    if setup.dataset.model_options and options.mode in ("score", "complete"):
        raise ConfigError(f"--mode={options.mode} works on images; for code maps use the "
                          "Python API (log_likelihood(reduce=...), complete)")
    model, source = trained_model(config, options, setup, tf1, run_json)
    if options.mode == "eval":
        return evaluate(model, options, setup, source, log)
    if options.mode == "score":
        return score(model, config, options, setup, log)
    if options.mode == "complete":
        return complete(model, config, options, setup, log)
    return sample(model, config, options, setup, log)


def _strategy(options):
    devices = distribute.split_cpu(options.cpu_replicas) if options.cpu_replicas else None
    return distribute.make_strategy(options.strategy, devices)


def _dataset(options, tf1, config):
    dataset = data.load(options.dataset, options.data_dir, options.tfds_data_dir,
                        options.binarize, options.data_path,
                        config.model_options.get("num_codes"))
    if tf1 is not None:
        channels = tf1_checkpoint.infer_hyperparameters(tf1)["image_channels"]
        if channels != dataset.image_shape[-1]:
            raise ConfigError(f"{tf1.path!r} models {channels}-channel images; "
                              f"--dataset={dataset.name} has shape {dataset.image_shape}")
    return dataset


def train(config, options, setup, tf1=None, log=print):
    """Train (or resume) the run in `options.save_dir`; with `options.export_at_end`, export
    its EMA weights. Returns the last test bits/dim."""
    run_trainer = trainer.Trainer(config, setup.dataset, setup.strategy, options.save_dir,
                                  log=log, tf1=tf1)
    dataset = setup.dataset
    log(f"{config.model} on {dataset.name} {dataset.image_shape}: "
        f"{run_trainer.model.count_params():,} parameters, "
        f"{setup.strategy.num_replicas_in_sync} replica(s), global batch "
        f"{run_trainer.global_batch}, save dir {options.save_dir}")
    test_bpd = run_trainer.train(allow_changes=options.allow_changed_hparams)
    if options.export_at_end and run_trainer.chief:
        from pixel_cnn_pp.runtime.export import export_run
        path = export_run(options.save_dir, skip_if_current=True)
        log(f"SavedModel (TF Serving) of the EMA weights: {path}")
    return test_bpd


def trained_model(config, options, setup, tf1=None, run_json=None):
    """(model, where its weights come from) in the strategy's scope: the `config.tf1_weights`
    of a TF1 checkpoint, else the EMA weights of the run in `options.save_dir` (`run_json`: its
    run.json, read by the caller)."""
    if tf1 is not None:
        with setup.strategy.scope():
            model = tf1_checkpoint.load_model(tf1, setup.dataset.image_shape[:2],
                                              config.tf1_weights,
                                              config.model_options["resnet_nonlinearity"])
        source = f"{config.tf1_weights} weights of {config.tf1_checkpoint}"
    else:
        loaded = runs.load_run(options.save_dir, weights="ema", strategy=setup.strategy,
                               run=run_json)
        model, source = loaded.model, f"EMA weights of {loaded.checkpoint_path}"
    if model.num_classes and model.num_classes != setup.dataset.num_classes:
        raise ConfigError(f"the model has {model.num_classes} classes; "
                          f"--dataset={setup.dataset.name} has {setup.dataset.num_classes}")
    return model, source


def evaluate(model, options, setup, source, log=print):
    """Bits/dim of `options.eval_split` (dropout off, the last partial batch dropped)."""
    trainer.check_data_fits(model, setup.dataset, setup.global_batch)
    split = setup.dataset.test if options.eval_split == "test" else setup.dataset.train
    bpd = trainer.evaluate(model, split, setup.strategy, setup.global_batch, options.eval_split)
    log(f"{options.eval_split} bits/dim ({source}): {bpd:.5f}")
    return bpd


def sample(model, config, options, setup, log=print):
    """`config.num_samples` images with `config.seed`, written to <save_dir>/samples/
    samples_seed_<seed>.png and .npy (code maps: the .npy, conditioned on the first test
    conditions); returns the file's path."""
    n = config.num_samples
    images = model.sample(n, config.seed, trainer.sample_labels(model, n),
                          condition=trainer.sample_conditions(model, setup.dataset, n))
    path = samples.write(options.save_dir, images, f"samples_seed_{config.seed}")
    log(f"wrote {len(images)} samples to {path}" + (" and .npy" if images.ndim == 4 else ""))
    return path


def _labels_for(model, labels, what):
    """The labels a model scores `what` with: none for an unconditional model."""
    if not model.num_classes:
        return None
    if labels is None or labels.min() < 0 or labels.max() >= model.num_classes:
        raise ConfigError(f"{model.name} is class-conditional ({model.num_classes} classes) and "
                          f"{what} has no labels in [0, {model.num_classes})")
    return labels.astype("int32")


def score(model, config, options, setup, log=print):
    """Score the test split (and `options.ood_dataset`) with the model and, given
    `options.background_dir`, its likelihood ratio: scores/<set>.csv and _heatmaps.png per set,
    and with an OOD set scores/metrics_<set>.csv of every score. Returns {score: metrics} (an
    empty dict without an OOD set)."""
    background = None
    if options.background_dir:
        background = runs.load_run(options.background_dir, weights="ema", log=log).model
        if background.image_shape != model.image_shape:
            raise ConfigError(f"--background_dir={options.background_dir!r} models images of "
                              f"shape {background.image_shape}; the model's are "
                              f"{model.image_shape}")
    test_images, test_labels = scores.split_arrays(setup.dataset.test)
    sets = [("test", test_images, test_labels)]
    if options.ood_dataset:
        images, labels, name = scores.ood_images(
            options.ood_dataset, setup.dataset.name, test_images, test_labels, model.image_shape,
            config.seed, options.ood_data_dir, options.tfds_data_dir)
        sets.append((name, images, labels))
    results = {}
    for name, images, labels in sets:
        for scorer in (model, background):  # refuse a set a conditional model cannot score
            if scorer is not None:
                _labels_for(scorer, labels, f"--ood_dataset={options.ood_dataset}"
                            if name != "test" else "the test split")
        columns, maps = scores.score_images(model, background, images, labels,
                                            config.batch_size, name, log)
        path = scores.write_set(options.save_dir, name, images, columns, maps)
        log(f"{name}: mean {columns['bits_per_dim'].mean():.4f} bits/dim over {len(images)} "
            f"images; wrote {path} and heatmaps")
        results[name] = columns
    if len(sets) == 1:
        return {}
    name = sets[1][0]
    table = scores.metrics(results["test"], results[name])
    path = os.path.join(options.save_dir, "scores", f"metrics_{name}.csv")
    scores.write_metrics(path, table)
    log(f"detecting {name} among the test images (AUROC, AUPRC, FPR at 80% TPR):")
    for score_name, m in table.items():
        log(f"  {score_name:17s} {m['auroc']:.4f}  {m['auprc']:.4f}  {m['fpr_at_80_tpr']:.4f}")
    log(f"wrote {path}")
    return table


def complete(model, config, options, setup, log=print):
    """The first `config.num_samples` test images with all but their top `options.known_rows`
    rows drawn, `options.completions` times (seeds seed, seed + 1, ...): a grid of rows
    (original, the given part, completions) in <save_dir>/samples/completions_seed_<seed>.png,
    and the (N, 2 + completions, H, W, C) images in .npy. Returns the PNG's path."""
    height = model.image_shape[0]
    known_rows = height // 2 if options.known_rows < 0 else options.known_rows
    if known_rows > height:
        raise ConfigError(f"--known_rows={known_rows} exceeds the image height {height}")
    images, labels = scores.split_arrays(setup.dataset.test.take(config.num_samples))
    labels = _labels_for(model, labels, "the test split")
    known = np.zeros(model.image_shape[:2], bool)
    known[:known_rows] = True
    given = np.where(known[None, :, :, None], images, 128).astype(np.uint8)  # hidden: gray
    columns = [images, given] + [model.complete(images, known, config.seed + k, labels)
                                 for k in range(options.completions)]
    rows = np.stack(columns, axis=1)
    path = samples.write(options.save_dir, rows.reshape((-1,) + model.image_shape),
                         f"completions_seed_{config.seed}", cols=len(columns))
    atomic.save_npy(path[:-len(".png")] + ".npy", rows)
    log(f"wrote {len(images)} images x {options.completions} completions of the rows below "
        f"row {known_rows} to {path} and .npy")
    return path
