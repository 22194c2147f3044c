"""Every model of the project by name, and the named training set-ups (presets).

    model = build_model("pixel_snail", (32, 32, 3), attn_rep=4, nr_filters=64)

Each model package declares what it defines in setup.cfg, as entry points (the standard plugin
mechanism, read from the installed package's metadata), so that this base package needs no
import of, nor the name of, any model package:

    pixel_cnn_pp.models:  name = module:ModelClass
    pixel_cnn_pp.presets: name = module:PRESETS   ({preset name: {flag: value}})

A class defined elsewhere (a notebook, a test) can be added with `register_model`.
Model options are the class's own keyword arguments: `build_model` refuses names the class
does not take, and the class validates the values.
"""
import functools
import importlib.metadata
import inspect

from pixel_cnn_pp.errors import ConfigError

MODELS_GROUP = "pixel_cnn_pp.models"
PRESETS_GROUP = "pixel_cnn_pp.presets"
_REGISTERED = {}
# Keras arguments every model takes besides its own: the dtype policy is the precision.
KERAS_OPTIONS = ("dtype",)


def register_model(name, cls):
    """Make `cls` buildable as `name` in this process (entry points need no call)."""
    _REGISTERED[name] = cls
    return cls


@functools.lru_cache(maxsize=None)
def _entry_points(group):
    points = {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}
    if not points:
        raise ConfigError(f"no {group} entry points found: install the project "
                          "(pip install -e .) so that its models are registered")
    return points


def model_names():
    return sorted(set(_entry_points(MODELS_GROUP)) | set(_REGISTERED))


def model_class(name):
    """The class registered as `name` (imported on first use)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    point = _entry_points(MODELS_GROUP).get(name)
    if point is None:
        raise ConfigError(f"model={name!r} is not one of {', '.join(model_names())}")
    return point.load()


def model_options(name):
    """{option: default} of the model's constructor (image_shape and num_classes included),
    and those of `AutoregressiveModel`'s that it passes on (the condition map's)."""
    from pixel_cnn_pp.model.autoregressive import AutoregressiveModel
    options = {}
    for init in (AutoregressiveModel.__init__, model_class(name).__init__):
        options.update({p.name: p.default for p in inspect.signature(init).parameters.values()
                        if p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"})
    return {**options, **{k: None for k in KERAS_OPTIONS}}


def build_model(name, image_shape, **options):
    """A new, unbuilt model `name` for images (H, W, C); `options` are its keyword arguments.
    Its Keras name is `name`, so `model.name` says which registered model it is."""
    unknown = sorted(set(options) - set(model_options(name)))
    if unknown:
        raise ConfigError(f"model {name!r} takes no option {', '.join(unknown)}")
    return model_class(name)(image_shape=tuple(image_shape), name=name, **options)


def presets():
    """{preset name: {flag: value}} of every model package."""
    merged = {}
    for point in _entry_points(PRESETS_GROUP).values():
        merged.update(point.load())
    return merged
