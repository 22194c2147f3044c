"""The PixelCNN++ network: Keras twin of `model_spec` (openai/pixel-cnn `pixel_cnn_pp/model.py`)."""
import keras
from keras import ops

from pixel_cnn_pp.autoregressive import AutoregressiveModel
from pixel_cnn_pp.gated_resnet import GatedResnet
from pixel_cnn_pp.mixture import DiscretizedMixLogistic
from pixel_cnn_pp.ops import down_shift, right_shift
from pixel_cnn_pp.shifted import (DownRightShiftedConv2D, DownRightShiftedConv2DTranspose,
                                  DownShiftedConv2D, DownShiftedConv2DTranspose)
from pixel_cnn_pp.weight_norm import Nin

NUM_STAGES = 3  # resolutions H, H/2, H/4


@keras.saving.register_keras_serializable(package="pixel_cnn_pp")
class PixelCNNpp(AutoregressiveModel):
    """PixelCNN++ (Salimans et al. 2017) with the original's architecture and defaults.

    Two causal streams: u sees the rows above, ul the rows above and the pixels to the left.
    Up pass: nr_resnet gated resnets at H, H/2 and H/4 (strided shifted convs between), every
    output kept. Down pass: nr_resnet, nr_resnet+1, nr_resnet+1 gated resnets back up to H,
    each consuming one kept output as its auxiliary input. Output: nin(elu(ul)) -> mixture params.

    x: (B, H, W, C) in [-1, 1], H and W divisible by 4, C in {1, 3}; class_label: (B,) ints for a
    class-conditional model -> (B, H, W, P) with P = 10 * nr_logistic_mix for C = 3.

    Sublayers are created in the original's order, so `creation_order()` lists the layers that
    the original names conv2d_0, conv2d_1, ..., dense_0, ..., deconv2d_0, ... (see `tf1_names`).
    """

    def __init__(self, image_shape=(32, 32, 3), nr_resnet=5, nr_filters=160, nr_logistic_mix=10,
                 resnet_nonlinearity="concat_elu", dropout_p=0.5, num_classes=None, **kwargs):
        super().__init__(image_shape, num_classes=num_classes, **kwargs)
        height, width, channels = self.image_shape
        if height % 4 or width % 4:
            raise ValueError(f"PixelCNN++ needs H and W divisible by 4, got image_shape "
                             f"{self.image_shape}")
        for name, value in (("nr_resnet", nr_resnet), ("nr_filters", nr_filters)):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.nr_resnet = int(nr_resnet)
        self.nr_filters = int(nr_filters)
        self.nr_logistic_mix = int(nr_logistic_mix)
        self.resnet_nonlinearity = resnet_nonlinearity
        self.dropout_p = float(dropout_p)
        self.distribution = DiscretizedMixLogistic(self.nr_logistic_mix, channels)

        f = self.nr_filters

        def block(conv, aux):
            return GatedResnet(f, conv=conv, nonlinearity=resnet_nonlinearity,
                               dropout_p=self.dropout_p, aux=aux, num_classes=num_classes)

        # Input stage.
        self.u_in = DownShiftedConv2D(f, (2, 3))
        self.ul_in_down = DownShiftedConv2D(f, (1, 3))
        self.ul_in_right = DownRightShiftedConv2D(f, (2, 1))
        # Up pass: per stage nr_resnet (u, ul) pairs, then a strided pair except after the last.
        self.up_u, self.up_ul, self.down_sample_u, self.down_sample_ul = [], [], [], []
        for stage in range(NUM_STAGES):
            for _ in range(self.nr_resnet):
                self.up_u.append(block("down_shifted", aux=False))
                self.up_ul.append(block("down_right_shifted", aux=True))
            if stage < NUM_STAGES - 1:
                self.down_sample_u.append(DownShiftedConv2D(f, strides=(2, 2)))
                self.down_sample_ul.append(DownRightShiftedConv2D(f, strides=(2, 2)))
        # Down pass: nr_resnet pairs at H/4, then transposed-conv up and nr_resnet + 1 pairs.
        self.down_u, self.down_ul, self.up_sample_u, self.up_sample_ul = [], [], [], []
        for stage in range(NUM_STAGES):
            if stage > 0:
                self.up_sample_u.append(DownShiftedConv2DTranspose(f))
                self.up_sample_ul.append(DownRightShiftedConv2DTranspose(f))
            for _ in range(self.nr_resnet + (stage > 0)):
                self.down_u.append(block("down_shifted", aux=True))
                self.down_ul.append(block("down_right_shifted", aux=True))
        self.out_nin = Nin(self.distribution.num_params)

    def _stage_sizes(self):
        up = [self.nr_resnet] * NUM_STAGES
        down = [self.nr_resnet + (stage > 0) for stage in range(NUM_STAGES)]
        return up, down

    def creation_order(self):
        """Weight-normalised and conditioning layers in the order the original creates them."""
        layers = [self.u_in, self.ul_in_down, self.ul_in_right]
        up, down = self._stage_sizes()
        k = 0
        for stage, n in enumerate(up):
            for u, ul in zip(self.up_u[k:k + n], self.up_ul[k:k + n]):
                layers += u.creation_order() + ul.creation_order()
            k += n
            if stage < NUM_STAGES - 1:
                layers += [self.down_sample_u[stage], self.down_sample_ul[stage]]
        k = 0
        for stage, n in enumerate(down):
            if stage > 0:
                layers += [self.up_sample_u[stage - 1], self.up_sample_ul[stage - 1]]
            for u, ul in zip(self.down_u[k:k + n], self.down_ul[k:k + n]):
                layers += u.creation_order() + ul.creation_order()
            k += n
        return layers + [self.out_nin]

    def call(self, x, class_label=None, training=False, init=False):
        h = self.conditioning(class_label)
        kw = dict(h=h, training=training, init=init)
        x_pad = ops.concatenate([x, ops.ones_like(x[..., :1])], axis=-1)  # marks image vs padding

        # Up pass: H -> H/2 -> H/4, keeping every output for the down pass.
        u_list = [down_shift(self.u_in(x_pad, init=init))]
        ul_list = [down_shift(self.ul_in_down(x_pad, init=init))
                   + right_shift(self.ul_in_right(x_pad, init=init))]
        up, down = self._stage_sizes()
        k = 0
        for stage, n in enumerate(up):
            for u_block, ul_block in zip(self.up_u[k:k + n], self.up_ul[k:k + n]):
                u_list.append(u_block(u_list[-1], **kw))
                ul_list.append(ul_block(ul_list[-1], a=u_list[-1], **kw))
            k += n
            if stage < NUM_STAGES - 1:
                u_list.append(self.down_sample_u[stage](u_list[-1], init=init))
                ul_list.append(self.down_sample_ul[stage](ul_list[-1], init=init))

        # Down pass: H/4 -> H/2 -> H, consuming the kept outputs in reverse.
        u, ul = u_list.pop(), ul_list.pop()
        k = 0
        for stage, n in enumerate(down):
            if stage > 0:
                u = self.up_sample_u[stage - 1](u, init=init)
                ul = self.up_sample_ul[stage - 1](ul, init=init)
            for u_block, ul_block in zip(self.down_u[k:k + n], self.down_ul[k:k + n]):
                u = u_block(u, a=u_list.pop(), **kw)
                ul = ul_block(ul, a=ops.concatenate([u, ul_list.pop()], axis=-1), **kw)
            k += n
        assert not u_list and not ul_list, "every up-pass output is consumed exactly once"

        return self.out_nin(ops.elu(ul), init=init)

    @staticmethod
    def row_phase(i):
        """What `call_row` needs of the row index i: i % 4, with 3 folded onto 1 (both
        recompute the full resolution only, with the same parity), so it is traced 3 times."""
        phase = i % 4
        return 1 if phase == 3 else phase

    def call_row(self, x_row, rows, held, class_label=None):
        """`call` for one image row, for the cached sampler (`fast_sampler.py`): the same layers
        and wiring, evaluated on row i of the full-resolution map, row i//2 of the half and row
        i//4 of the quarter one, with the rows above each convolution's input from `rows`.

        Only the resolutions whose current row still changes are recomputed: a half-resolution
        row depends on full-resolution rows up to 2*(i//2) only, so on odd rows its values are
        final and its down-pass outputs come from `held` ({level: (u, ul)}, returned updated).
        x_row: (B, 1, W, C) -> (mixture parameters (B, 1, W, P), held); dropout is off.
        """
        phase = rows.phase  # row_phase(i)
        levels = 3 if phase == 0 else 2 if phase == 2 else 1
        h = self.conditioning(class_label)
        kw = dict(h=h, rows=rows)
        x_pad = ops.concatenate([x_row, ops.ones_like(x_row[..., :1])], axis=-1)

        u_list = [down_shift(self.u_in(x_pad, rows=rows), rows=rows, name="down_shift/u")]
        ul_list = [down_shift(self.ul_in_down(x_pad, rows=rows), rows=rows, name="down_shift/ul")
                   + right_shift(self.ul_in_right(x_pad, rows=rows))]
        up, down = self._stage_sizes()
        k = 0
        for stage, n in enumerate(up[:levels]):
            for u_block, ul_block in zip(self.up_u[k:k + n], self.up_ul[k:k + n]):
                u_list.append(u_block(u_list[-1], **kw))
                ul_list.append(ul_block(ul_list[-1], a=u_list[-1], **kw))
            k += n
            if stage < levels - 1:
                u_list.append(self.down_sample_u[stage](u_list[-1], rows=rows))
                ul_list.append(self.down_sample_ul[stage](ul_list[-1], rows=rows))
            elif stage < NUM_STAGES - 1:  # not run on this row, but its next run needs this row
                rows.above(self.down_sample_u[stage].name, u_list[-1], 1)
                rows.above(self.down_sample_ul[stage].name, ul_list[-1], 1)

        held = dict(held)
        top = levels - 1
        if levels < NUM_STAGES:  # the stage below, final since its last active row
            u, ul = held[levels]
        else:
            u, ul = u_list.pop(), ul_list.pop()
        k = sum(down[:NUM_STAGES - levels])
        for stage in range(NUM_STAGES - levels, NUM_STAGES):
            level = NUM_STAGES - 1 - stage
            if stage > 0:  # the upsampled row pair; this row is its (i >> level) % 2 half
                u = self.up_sample_u[stage - 1](u)
                ul = self.up_sample_ul[stage - 1](ul)
                half = (phase >> level) & 1  # (i >> level) % 2
                u, ul = u[:, half:half + 1], ul[:, half:half + 1]
            n = down[stage]
            for u_block, ul_block in zip(self.down_u[k:k + n], self.down_ul[k:k + n]):
                u = u_block(u, a=u_list.pop(), **kw)
                ul = ul_block(ul, a=ops.concatenate([u, ul_list.pop()], axis=-1), **kw)
            k += n
            if 0 < level <= top:
                held[level] = (u, ul)
        assert not u_list and not ul_list, "every up-pass output is consumed exactly once"
        return self.out_nin(ops.elu(ul)), held

    def get_config(self):
        config = super().get_config()
        config.update(nr_resnet=self.nr_resnet, nr_filters=self.nr_filters,
                      nr_logistic_mix=self.nr_logistic_mix,
                      resnet_nonlinearity=self.resnet_nonlinearity, dropout_p=self.dropout_p)
        return config
