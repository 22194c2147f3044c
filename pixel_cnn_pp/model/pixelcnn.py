"""The PixelCNN++ network: Keras twin of `model_spec` (openai/pixel-cnn `pixel_cnn_pp/model.py`)."""
import functools

import keras
from keras import ops

from pixel_cnn_pp.errors import ConfigError
from pixel_cnn_pp.model.autoregressive import AutoregressiveModel
from pixel_cnn_pp.model.conditioning import check_sizes
from pixel_cnn_pp.model.gated_resnet import GatedResnet
from pixel_cnn_pp.model.ops import get_nonlinearity
from pixel_cnn_pp.model.outputs import make_output
from pixel_cnn_pp.model.passes import FULL
from pixel_cnn_pp.model.shifted import (DownRightShiftedConv2D, DownRightShiftedConv2DTranspose,
                                        DownShiftedConv2D, DownShiftedConv2DTranspose)
from pixel_cnn_pp.model.weight_norm import Nin

NUM_LEVELS = 3  # resolutions H, H/2, H/4


@keras.saving.register_keras_serializable(package="pixel_cnn_pp")
class PixelCNNpp(AutoregressiveModel):
    """PixelCNN++ (Salimans et al. 2017) with the original's architecture and defaults.

    Two causal streams: u sees the rows above, ul the rows above and the pixels to the left.
    Up pass: nr_resnet gated resnets at H, H/2 and H/4 (strided shifted convs between), every
    output kept. Down pass: nr_resnet, nr_resnet+1, nr_resnet+1 gated resnets back up to H,
    each consuming one kept output as its auxiliary input. Output: nin(elu(ul)) -> mixture params.

    x: (B, H, W, C) in [-1, 1], H and W divisible by 4, C in {1, 3}; class_label: (B,) ints for a
    class-conditional model -> (B, H, W, P) with P = 10 * nr_logistic_mix for C = 3.
    `output="categorical"` with `num_codes=K` (not in the original): a prior over code maps,
    x one-hot (B, H, W, K), image_shape (H, W, 1), P = K logits. `condition_shape` (and
    `condition_codes`): a spatial condition map, resized to H, H/2 and H/4 and projected into
    every gated resnet (`AutoregressiveModel`). `remat=True`: every gated resnet recomputes
    its activations in the backward pass instead of keeping them (`GatedResnet`).
    `dtype` is the Keras dtype policy of every layer ("mixed_bfloat16": bfloat16 compute, float32
    variables); the loss is float32 whatever it is.

    Layers are stored per level (0 = H, 1 = H/2, 2 = H/4): `down_sample[L - 1]` and
    `up_sample[L]` are the (u, ul) convolutions into and out of level L, `up_blocks[L]` and
    `down_blocks[L]` its (u, ul) gated resnet pairs. `creation_order()` lists the layers in the
    order in which the original names them conv2d_0, ..., dense_0, ..., deconv2d_0, ...
    """

    def __init__(self, image_shape=(32, 32, 3), nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
                 resnet_nonlinearity="concat_elu", dropout_p=0.5, num_classes=None,
                 output="logistic_mixture", num_codes=None, remat=False, **kwargs):
        if output == "categorical" and len(image_shape) == 2:
            image_shape = (*image_shape, 1)
        super().__init__(image_shape, num_classes=num_classes, **kwargs)
        height, width, channels = self.image_shape
        if height % 4 or width % 4:
            raise ConfigError(f"PixelCNN++ needs H and W divisible by 4, got image_shape "
                              f"{self.image_shape}")
        for name, value in (("nr_resnet", nr_resnet), ("nr_filters", nr_filters)):
            if int(value) <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        get_nonlinearity(resnet_nonlinearity)  # refuses an unknown name
        self.nr_resnet = int(nr_resnet)
        self.nr_filters = int(nr_filters)
        self.nr_logistic_mix = int(nr_logistic_mix)
        self.resnet_nonlinearity = resnet_nonlinearity
        self.dropout_p = float(dropout_p)
        self.output_type = output  # `output` is a keras.Model property
        self.remat = bool(remat)
        self.distribution = make_output(output, channels, self.nr_logistic_mix, num_codes)
        if self.condition_shape is not None:
            check_sizes(self.condition_shape, self.level_sizes())

        f, dtype = self.nr_filters, {"dtype": self.dtype_policy}
        block = functools.partial(GatedResnet, f, nonlinearity=resnet_nonlinearity,
                                  dropout_p=self.dropout_p, num_classes=num_classes,
                                  condition_channels=self.condition_channels,
                                  remat=self.remat, **dtype)

        def pair(n, aux_u):
            return [(block(conv="down_shifted", aux=aux_u),
                     block(conv="down_right_shifted", aux=True)) for _ in range(n)]

        self.u_in = DownShiftedConv2D(f, (2, 3), **dtype)
        self.ul_in_down = DownShiftedConv2D(f, (1, 3), **dtype)
        self.ul_in_right = DownRightShiftedConv2D(f, (2, 1), **dtype)
        self.down_sample = [(DownShiftedConv2D(f, strides=(2, 2), **dtype),
                             DownRightShiftedConv2D(f, strides=(2, 2), **dtype))
                            for _ in range(NUM_LEVELS - 1)]
        self.up_blocks = [pair(self.nr_resnet, aux_u=False) for _ in range(NUM_LEVELS)]
        self.up_sample = [(DownShiftedConv2DTranspose(f, **dtype),
                           DownRightShiftedConv2DTranspose(f, **dtype))
                          for _ in range(NUM_LEVELS - 1)]
        # The down pass has one more pair on every level but the lowest.
        self.down_blocks = [pair(self.nr_resnet + (level < NUM_LEVELS - 1), aux_u=True)
                            for level in range(NUM_LEVELS)]
        self.out_nin = Nin(self.distribution.num_params, **dtype)

    def creation_order(self):
        """Weight-normalised and conditioning layers in the order the original creates them."""
        def blocks(pairs):
            return [layer for u, ul in pairs for layer in u.creation_order() + ul.creation_order()]

        layers = [self.u_in, self.ul_in_down, self.ul_in_right]
        for level in range(NUM_LEVELS):
            layers += list(self.down_sample[level - 1]) if level else []
            layers += blocks(self.up_blocks[level])
        for level in reversed(range(NUM_LEVELS)):
            layers += list(self.up_sample[level]) if level < NUM_LEVELS - 1 else []
            layers += blocks(self.down_blocks[level])
        return layers + [self.out_nin]

    vertical_stack = True  # the sampler runs `RowStep`s for the u stream

    def level_sizes(self):
        """(h, w) of each resolution level: H, H/2, H/4."""
        height, width = self.image_shape[:2]
        return [(height >> level, width >> level) for level in range(NUM_LEVELS)]

    def call(self, x, class_label=None, training=False, ctx=FULL, condition=None):
        """The network, written once for every pass (`ctx`: full map, DDI or a sampler step).

        The u stream never reads ul, so it is computed first (all levels) and ul after it; the
        sampler computes u once per image row and ul once per pixel."""
        block = dict(h=self.conditioning(class_label), training=training, ctx=ctx,
                     maps=ctx.condition_maps(self, condition, self.level_sizes()))
        u_values = ctx.vertical(
            lambda: self._vertical(0, ctx.shifted_input(self.u_in, x, "down"), block, ctx)[1])
        if u_values is None:  # a row step of the sampler: the u stream is all it computes
            return None
        ul = (ctx.shifted_input(self.ul_in_down, x, "down")
              + ctx.shifted_input(self.ul_in_right, x, "right"))
        ul = self._horizontal(0, ul, u_values, block, ctx)
        return self.out_nin(ops.elu(ul), ctx=ctx)

    def _vertical(self, level, u, block, ctx):
        """The u stream from `level` down and back: (u out, {u block name: its output})."""
        values, kept = {}, [u]  # the level's input, then every up block's output
        for u_block, _ in self.up_blocks[level]:
            u = values[u_block.name] = u_block(u, **_at(block, level))
            kept.append(u)
        if level == NUM_LEVELS - 1:
            u = kept.pop()  # the up pass's last output starts the down pass
        else:
            down, up = self.down_sample[level][0], self.up_sample[level][0]
            u, lower = ctx.level(
                level + 1, lambda v: self._vertical(level + 1, down(v, ctx=ctx), block, ctx),
                u, owner=down)
            values.update(lower)
            u = ctx.upsampled(up(u, ctx=ctx), level)
        for u_block, _ in self.down_blocks[level]:
            u = values[u_block.name] = u_block(u, a=kept.pop(), **_at(block, level))
        return u, values

    def _horizontal(self, level, ul, u_values, block, ctx):
        """The ul stream from `level` down and back, reading the u stream's `u_values`."""
        kept = [ul]
        for u_block, ul_block in self.up_blocks[level]:
            ul = ul_block(ul, a=ctx.at(u_values[u_block.name], level), **_at(block, level))
            kept.append(ul)
        if level == NUM_LEVELS - 1:
            ul = kept.pop()
        else:
            down, up = self.down_sample[level][1], self.up_sample[level][1]
            ul = ctx.level(
                level + 1,
                lambda v: self._horizontal(level + 1, down(v, ctx=ctx), u_values, block, ctx),
                ul, owner=down)
            ul = ctx.upsampled(up(ul, ctx=ctx), level)
        for u_block, ul_block in self.down_blocks[level]:
            u = ctx.at(u_values[u_block.name], level)
            ul = ul_block(ul, a=[u, kept.pop()], **_at(block, level))  # concatenated there
        return ul

    def get_config(self):
        config = super().get_config()
        config.update(nr_resnet=self.nr_resnet, nr_filters=self.nr_filters,
                      nr_logistic_mix=self.nr_logistic_mix,
                      resnet_nonlinearity=self.resnet_nonlinearity, dropout_p=self.dropout_p)
        if self.num_codes:  # absent otherwise: older files read unchanged
            config.update(output=self.output_type, num_codes=self.num_codes)
        if self.remat:
            config.update(remat=True)
        return config


def _at(block, level):
    """The gated resnets' keyword arguments at `level`: the condition map of that level."""
    kwargs = {k: v for k, v in block.items() if k != "maps"}
    if block["maps"] is not None:
        kwargs["s"] = block["maps"][level]
    return kwargs

