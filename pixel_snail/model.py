"""The PixelSNAIL network: Keras twin of `_base_noup_smallkey_spec` (neocxi/pixelsnail-public
`pixel_cnn_pp/model.py`), whose `attn_rep=12` partial is the published `h12_noup_smallkey`.

Built from the PixelCNN++ layers (`pixel_cnn_pp.model`): shifted convs, `GatedResnet` (also
with `conv="nin"`), `Nin`, down/right shifts. The one numerical difference from PixelCNN++'s
layers: PixelSNAIL vendors the 2016 data-dependent init, whose epsilon is 1e-8 for convolutions
(1e-10 for dense/nin).
"""
import keras
from keras import ops

from pixel_cnn_pp.errors import ConfigError

from pixel_cnn_pp.model.autoregressive import AutoregressiveModel
from pixel_cnn_pp.model.conditioning import check_sizes
from pixel_cnn_pp.model.gated_resnet import GatedResnet
from pixel_cnn_pp.model.outputs import OUTPUTS as BASE_OUTPUTS
from pixel_cnn_pp.model.outputs import make_output
from pixel_cnn_pp.model.passes import FULL
from pixel_cnn_pp.model.shifted import DownRightShiftedConv2D, DownShiftedConv2D
from pixel_cnn_pp.model.weight_norm import Nin
from pixel_snail.attention import causal_attention, positional_background
from pixel_snail.bernoulli import Bernoulli

CONV_DDI_EPSILON = 1e-8  # 2016 DDI form vendored by PixelSNAIL; nin/dense keep 1e-10
OUTPUTS = BASE_OUTPUTS + ("bernoulli",)


@keras.saving.register_keras_serializable(package="pixel_snail")
class AttentionBlock(keras.layers.Layer):
    """One iteration of the `for attn_rep in range(attn_rep)` loop of `_base_noup_smallkey_spec`:

        ul = gated_resnet(ul, conv=down_right_shifted_conv2d)          x nr_resnet
        raw = nin(gated_resnet(concat[x, ul, bg], conv=nin), mixin_size + key_size)
        key, mixin = raw[..., :key_size], raw[..., key_size:]
        query = nin(gated_resnet(concat[ul, bg], conv=nin), query_size)
        ul = gated_resnet(ul, a=causal_attention(key, mixin, query), conv=nin)

    ul: (B, H, W, F), x: (B, H, W, C_x), bg: (B, H, W, 2C) -> (B, H, W, F). The key/mixin split
    is a slice (key first), as the original. key_size must equal query_size (dot products).
    C = `image_channels`; C_x = `input_channels` (default C; K for one-hot codes). With
    `num_classes` or `condition_channels`, every gated resnet takes h (B, K) or its condition
    map s (B, H, W, D) (`GatedResnet`).
    """

    def __init__(self, filters, nr_resnet, key_size, mixin_size, image_channels=3,
                 nonlinearity="elu", dropout_p=0.0, input_channels=None, num_classes=None,
                 condition_channels=None, remat=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.nr_resnet = int(nr_resnet)
        self.key_size = int(key_size)
        self.mixin_size = int(mixin_size)
        self.image_channels = int(image_channels)
        self.nonlinearity = nonlinearity
        self.dropout_p = float(dropout_p)
        self.input_channels = self.image_channels if input_channels is None else int(input_channels)
        self.num_classes = num_classes
        self.condition_channels = condition_channels
        self.remat = bool(remat)

        dtype = {"dtype": self.dtype_policy}  # sublayers compute in the block's precision

        def block(width, conv, aux=False):
            eps = CONV_DDI_EPSILON if conv != "nin" else None  # nin is a dense: keeps 1e-10
            return GatedResnet(width, conv=conv, nonlinearity=nonlinearity,
                               dropout_p=self.dropout_p, aux=aux, ddi_epsilon=eps,
                               num_classes=num_classes, condition_channels=condition_channels,
                               remat=self.remat, **dtype)

        f, c = self.filters, self.image_channels
        # Created in the original's order, which fixes the TF1 `conv2d_k` / `dense_k` counters.
        self.resnets = [block(f, "down_right_shifted") for _ in range(self.nr_resnet)]
        # raw_content = concat[x (C_x), ul (F), background (2C)]; a 1x1 block keeps its width.
        self.content_block = block(f + self.input_channels + 2 * c, "nin")
        self.key_mixin_nin = Nin(self.mixin_size + self.key_size, **dtype)
        self.query_block = block(f + 2 * c, "nin")  # raw_q = concat[ul, background]
        self.query_nin = Nin(self.key_size, **dtype)
        self.out_block = block(f, "nin", aux=True)

    def creation_order(self):
        """The weight-normalised sublayers in the original's creation order: nr_resnet x
        (conv, conv), then 9 dense: content block (2), key/mixin nin, query block (2), query
        nin, output block (conv 1, nin of `a`, conv 2)."""
        layers = []
        for resnet in self.resnets:
            layers += resnet.creation_order()
        layers += self.content_block.creation_order() + [self.key_mixin_nin]
        layers += self.query_block.creation_order() + [self.query_nin]
        return layers + self.out_block.creation_order()

    def call(self, ul, x, background, training=False, ctx=FULL, h=None, s=None):
        kw = dict(training=training, ctx=ctx, h=h, s=s)
        for resnet in self.resnets:
            ul = resnet(ul, **kw)
        # On a sampler's pixel step these are the previous pixel's (its x is drawn by now).
        raw_content = ops.concatenate(ctx.key_inputs(self, x, ul, background), axis=-1)
        raw = self.key_mixin_nin(self.content_block(raw_content, **kw), ctx=ctx)
        key, mixin = raw[..., :self.key_size], raw[..., self.key_size:]
        raw_q = ops.concatenate([ul, background], axis=-1)
        query = self.query_nin(self.query_block(raw_q, **kw), ctx=ctx)
        mixed = causal_attention(key, mixin, query, ctx, owner=self)
        return self.out_block(ul, a=mixed, **kw)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, nr_resnet=self.nr_resnet, key_size=self.key_size,
                      mixin_size=self.mixin_size, image_channels=self.image_channels,
                      nonlinearity=self.nonlinearity, dropout_p=self.dropout_p)
        if self.remat:
            config["remat"] = True
        for key in ("input_channels", "num_classes", "condition_channels"):  # set ones only
            if getattr(self, key) is not None and (key != "input_channels"
                                                   or self.input_channels != self.image_channels):
                config[key] = getattr(self, key)
        return config


@keras.saving.register_keras_serializable(package="pixel_snail")
class PixelSNAIL(AutoregressiveModel):
    """PixelSNAIL with the original `_base_noup_smallkey_spec` architecture and the published
    `h12_noup_smallkey` defaults (F 256, nr_resnet 4, elu, attn_rep 12, key = query = 16,
    mixin F/2 = 128; see `pixel_snail.specs` for the named configurations).

    Only the up-left stream of PixelCNN++, at full resolution:

        ul = down_shift(conv[1,3](x_pad)) + right_shift(conv[2,1](x_pad))   x_pad = [x, 1]
        ul = AttentionBlock(ul, x, background)                             x attn_rep
        out = nin(elu(ul), distribution.num_params)

    x: (B, H, W, C) in [-1, 1] -> (B, H, W, P); P = 10 * nr_logistic_mix for C = 3
    (`output="logistic_mixture"`, C in {1, 3}) or P = C (`output="bernoulli"`, binary images),
    or one-hot codes (B, H, W, K) -> P = K logits (`output="categorical"`, `num_codes=K`, a
    prior over code maps; the positional background has 2 channels, one per coordinate).

    Sublayers are created in the original's order, so `creation_order()` lists the layers that
    the original names conv2d_0, ..., dense_0, ... (see `pixel_cnn_pp.model.tf1_names`).
    Beyond the original: class conditioning (its train.py raises NotImplementedError; here the
    one-hot h of PixelCNN++ into every gated resnet) and a spatial condition map
    (`condition_shape`, resized to H x W and projected into every gated resnet), as the
    conditional priors of VQ-VAE-2; `remat=True`, every gated resnet recomputed in the
    backward pass (`GatedResnet`; the attention maps are kept). Not ported: `att_downsample > 1` (the unpublished
    `h12_pool2_smallkey`).
    """

    def __init__(self, image_shape=(32, 32, 3), nr_resnet=4, nr_filters=256, nr_logistic_mix=10,
                 resnet_nonlinearity="elu", dropout_p=0.5, attn_rep=12, key_size=16,
                 query_size=None, mixin_size=None, output="logistic_mixture", num_classes=None,
                 num_codes=None, remat=False, **kwargs):
        if output == "categorical" and len(image_shape) == 2:
            image_shape = (*image_shape, 1)
        super().__init__(image_shape, num_classes=num_classes, **kwargs)
        for name, value in (("nr_resnet", nr_resnet), ("nr_filters", nr_filters),
                            ("attn_rep", attn_rep), ("key_size", key_size)):
            if int(value) <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        query_size = key_size if query_size is None else query_size
        if int(key_size) != int(query_size):
            raise ConfigError(f"key_size and query_size must be equal (one q_size in the "
                             f"original), got {key_size} and {query_size}")
        channels = self.image_shape[-1]
        self.nr_resnet = int(nr_resnet)
        self.nr_filters = int(nr_filters)
        self.nr_logistic_mix = int(nr_logistic_mix)
        self.resnet_nonlinearity = resnet_nonlinearity
        self.dropout_p = float(dropout_p)
        self.attn_rep = int(attn_rep)
        self.key_size = self.query_size = int(key_size)
        self.mixin_size = self.nr_filters // 2 if mixin_size is None else int(mixin_size)
        if self.mixin_size <= 0:
            raise ConfigError(f"mixin_size must be positive, got {mixin_size}")
        self.output_type = output  # `output` is a keras.Model property
        self.remat = bool(remat)
        if output == "bernoulli":
            self.distribution = Bernoulli(channels)
        else:
            self.distribution = make_output(output, channels, self.nr_logistic_mix, num_codes,
                                            OUTPUTS)
        if self.condition_shape is not None:
            check_sizes(self.condition_shape, [self.image_shape[:2]])
        codes = self.distribution.data_channels  # the background's copies per coordinate

        f, dtype = self.nr_filters, {"dtype": self.dtype_policy}
        self.ul_in_down = DownShiftedConv2D(f, (1, 3), ddi_epsilon=CONV_DDI_EPSILON, **dtype)
        self.ul_in_right = DownRightShiftedConv2D(f, (2, 1), ddi_epsilon=CONV_DDI_EPSILON, **dtype)
        inputs = {} if self.distribution.input_channels == codes else {
            "input_channels": self.distribution.input_channels}
        self.blocks = [AttentionBlock(f, self.nr_resnet, self.key_size, self.mixin_size,
                                      image_channels=codes, nonlinearity=resnet_nonlinearity,
                                      dropout_p=self.dropout_p, num_classes=self.num_classes,
                                      condition_channels=self.condition_channels,
                                      remat=self.remat, **inputs, **dtype)
                       for _ in range(self.attn_rep)]
        self.out_nin = Nin(self.distribution.num_params, **dtype)

    def creation_order(self):
        """Weight-normalised layers in the order the original creates them."""
        layers = [self.ul_in_down, self.ul_in_right]
        for block in self.blocks:
            layers += block.creation_order()
        return layers + [self.out_nin]

    def call(self, x, class_label=None, training=False, ctx=FULL, condition=None):
        """The network, written once for every pass (`ctx`: full map, DDI or a sampler's pixel)."""
        background = positional_background(x, ctx, self.distribution.data_channels)
        maps = ctx.condition_maps(self, condition, [self.image_shape[:2]])
        conditions = dict(h=self.conditioning(class_label), s=None if maps is None else maps[0])
        ul = (ctx.shifted_input(self.ul_in_down, x, "down")
              + ctx.shifted_input(self.ul_in_right, x, "right"))
        for block in self.blocks:
            ul = block(ul, x, background, training=training, ctx=ctx, **conditions)
        return self.out_nin(ops.elu(ul), ctx=ctx)

    def get_config(self):
        config = super().get_config()
        config.update(nr_resnet=self.nr_resnet, nr_filters=self.nr_filters,
                      nr_logistic_mix=self.nr_logistic_mix,
                      resnet_nonlinearity=self.resnet_nonlinearity, dropout_p=self.dropout_p,
                      attn_rep=self.attn_rep, key_size=self.key_size,
                      query_size=self.query_size, mixin_size=self.mixin_size,
                      output=self.output_type)
        if self.num_codes:  # absent otherwise: older files read unchanged
            config.update(num_codes=self.num_codes)
        if self.remat:
            config.update(remat=True)
        return config
