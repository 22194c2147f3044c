"""tf.distribute strategies by name: `mirrored` (all local GPUs, else the CPU), `one_device`,
and `multi_worker` (MultiWorkerMirroredStrategy configured by the TF_CONFIG variable)."""
import json
import os

import tensorflow as tf

STRATEGIES = ("mirrored", "one_device", "multi_worker")


def split_cpu(replicas):
    """Expose the CPU as `replicas` logical devices (testing data parallelism on one CPU).
    Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    return [f"/cpu:{i}" for i in range(replicas)]


def make_strategy(name, devices=None):
    """The strategy called `name`; `devices` optionally lists the devices of `mirrored`."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or None)
    if name == "one_device":
        default = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy((devices or [default])[0])
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                         "(cluster and task), see the README")
    try:
        json.loads(config)
    except ValueError:
        raise ValueError(f"TF_CONFIG is not valid JSON: {config[:80]!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()
