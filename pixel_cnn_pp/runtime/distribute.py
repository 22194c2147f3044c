"""tf.distribute strategies by name: `mirrored` (all local GPUs, else the CPU), `one_device`,
and `multi_worker` (MultiWorkerMirroredStrategy configured by the TF_CONFIG variable)."""
import json
import os

import tensorflow as tf

from pixel_cnn_pp.errors import ConfigError

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
        raise ConfigError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices or None)
    if name == "one_device":
        default = "/gpu:0" if tf.config.list_physical_devices("GPU") else "/cpu:0"
        return tf.distribute.OneDeviceStrategy((devices or [default])[0])
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                         "(cluster and task), see the README")
    try:
        json.loads(config)
    except ValueError:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {config[:80]!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_chief(strategy):
    """Whether this process writes the run's files: always, except on a multi-worker cluster,
    where the chief (or worker 0 of a cluster without one) does."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
