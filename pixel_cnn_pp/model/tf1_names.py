"""The original TF1 variable names of a model's weights (`tf.train.Saver` of `model_spec`).

The original names every weight-normalised layer `<type>_<k>` with one counter per type
(conv2d, dense, deconv2d, conditional_weights) in creation order, under the template scope
`model/`. Models here list their layers in that order (`creation_order()`), so the names follow.
"""
import collections


def tf1_variable_names(model, scope="model"):
    """{original name (e.g. 'model/conv2d_3/V'): Keras variable} in the original's creation order."""
    counters = collections.Counter()
    names = {}
    for layer in model.creation_order():
        kind = layer.tf1_type
        prefix = f"{scope}/{kind}_{counters[kind]}"
        counters[kind] += 1
        for variable in layer.weights:
            names[f"{prefix}/{variable.name}"] = variable
    return names
