"""What every bench script shares: the trainer of a preset on random images (public APIs only,
the presets of the registry) and where results go (printed and appended to bench/RESULTS.md)."""
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def record(text):
    print(text)
    with open(RESULTS, "a") as f:
        f.write(text)


def preset_trainer(preset, batch_size, **overrides):
    """(Trainer, one global batch) of a preset on one device, on random images of the preset
    dataset's shape (no download), initialised; `overrides` are flags {name: value}."""
    import numpy as np
    import tensorflow as tf

    from pixel_cnn_pp.runtime import data
    from pixel_cnn_pp.runtime.config import DATASET_SHAPES, from_preset
    from pixel_cnn_pp.runtime.trainer import Trainer

    config, dataset_name, _ = from_preset(preset, batch_size=batch_size,
                                          init_batch_size=batch_size, **overrides)
    shape = DATASET_SHAPES[dataset_name]
    images = np.random.RandomState(0).randint(0, 256, (batch_size * 2, *shape), np.uint8)
    fake = data.from_arrays("random", images, np.zeros(len(images)), batch_size, 10)
    trainer = Trainer(config, fake, tf.distribute.OneDeviceStrategy("/cpu:0"),
                      "/tmp/bench_unused", log=lambda *_: None)
    trainer.restore_or_initialize()
    return trainer, next(iter(trainer.distribute(fake.train, None)))
