"""The cached sampler's pass contexts (see `passes.py`): one step of the generation loop of
`sampling.py` at image position (i, j).

* `RowStep`: image row i of the vertical stack (PixelCNN++'s u stream, which sees only the rows
  above): each causal convolution reads the rows above its input from a cache; the down-sampled
  levels run only on rows i = 0 mod 2**level;
* `PixelStep`: pixel (i, j) of everything else: each layer computes its one output at (i, j),
  reading its input window from buffers of the rows it needs; the level-L computation runs only
  where i and j are multiples of 2**L, and attention reads its keys and values so far.

A step's state is a flat dict of tensors (caches and held outputs) with a fixed set of keys and
shapes, so that the sampler can carry it through a compiled loop: a first `discovering` step
finds the keys and shapes; later steps skip a level with `ops.cond`, whose branches return the
level's entries, or settle it while tracing where the pixel step's column phase tells (`when`).
"""
from keras import layers as keras_layers
from keras import ops, tree

from pixel_cnn_pp.model.buffers import pick, put_at, put_first, put_row, put_span
from pixel_cnn_pp.model.passes import Pass, with_ones


def _name(owner, tag=None):
    if isinstance(owner, keras_layers.Layer):
        return owner.name if tag is None else f"{owner.name}/{tag}"
    raise TypeError(f"cache owners are layers, got {owner!r}")


class _Step(Pass):
    """A step of the cached sampler at (row, col) (int32 scalars) of the `image` so far
    (B, H, W, C). `state` {key: tensor} holds the caches before the step; `layout` (from
    `discover`ed steps) the level of each key and the structure of held outputs, None while
    discovering; `kernels` {layer name: kernel} the weights, computed once per sampling call;
    `phase` (k, n), Python ints: col is k modulo n, which settles some of the step's branches
    while tracing (`when`); `later` a dict that the n steps of one loop iteration share, for
    the writes they make together (`PixelStep.put_later`), or None."""

    prefix = None

    def __init__(self, state, image, row, col, layout=None, kernels=None, phase=(0, 1),
                 later=None):
        super().__init__(init=False)
        self.phase = phase
        self.later = later
        self.prev = state
        self.current = {}
        self.image = image
        self.position = (row, col)
        self.layout = layout
        self.kernels = kernels or {}
        self.levels = {}  # key -> level, recorded while discovering
        self.structures = {}  # level -> the structure of its output, recorded while discovering
        self.projections = {}  # layer name -> its condition projection, made while discovering
        self.level_now = 0

    @property
    def discovering(self):
        return self.layout is None

    def key(self, owner, tag=None):
        return self.prefix + _name(owner, tag)

    def get(self, key, make):
        """The entry `key` as this step has set it so far, else as `before` gives it."""
        if key in self.current:
            return self.current[key]
        return self.before(key, make)

    def before(self, key, make):
        """The entry `key` before this step; while discovering, make() where there is none."""
        if key in self.prev:
            return self.prev[key]
        if not self.discovering:
            raise KeyError(f"no cache entry {key!r}: discover the sampler's state first")
        return make()

    def set(self, key, value):
        self.current[key] = value
        self.levels.setdefault(key, self.level_now)

    def state(self):
        return {**self.prev, **self.current}

    def kernel(self, layer):
        k = self.kernels.get(layer.name)
        return layer.kernel() if k is None else k

    def batch(self):
        return ops.shape(self.image)[0]

    def active(self, level):
        raise NotImplementedError

    def record_input(self, owner, x):
        raise NotImplementedError

    def activated_conv(self, layer, x, f):
        """layer(f(x)) at this step for a causal conv `layer` and f that maps 0 to 0 (see
        `ShiftedConv2D.of_activated`): f of the window of cached inputs, convolved."""
        return layer.convolve(f(self.window(layer, x, *layer.padding())), self)

    def level(self, level, fn, x, owner):
        self.record_input(owner, x)  # the strided conv's input, needed whether or not it runs
        held = f"{self.prefix}held/{level}/"

        def compute():
            saved, self.level_now = self.level_now, level
            out = fn(x)
            for i, value in enumerate(tree.flatten(out)):  # level_now is still `level`: theirs
                self.hold(f"{held}{i}", value, level)
            self.level_now = saved
            return out

        if self.discovering:
            structure = tree.map_structure(lambda t: 0, compute())
            self.structures[level] = structure
        else:
            keys = sorted(k for k, lvl in self.layout["levels"].items() if lvl >= level)
            outer = dict(self.current)

            def branch(run):
                def fn_():
                    self.current = dict(outer)
                    if run:
                        compute()
                    return [self.current.get(k, self.prev.get(k)) for k in keys]
                return fn_

            values = when(self.active(level), branch(True), branch(False))
            self.current = outer
            self.current.update(zip(keys, values))
            structure = self.layout["structures"][level]
        return tree.pack_sequence_as(structure, [self.held(f"{held}{i}", level)
                                                 for i in range(len(tree.flatten(structure)))])

    def hold(self, key, value, level):
        """Keep an output of `level` for the steps on which the level does not run."""
        self.set(key, value)

    def held(self, key, level):
        """The output of `level` that this step uses, computed now or held."""
        return self.current[key]

    def layout_of(self):
        """{"levels": {key: level}, "structures": {level: the structure of its output},
        "projections": {layer name: the condition's projection}} of a discovering step."""
        return {"levels": dict(self.levels), "structures": dict(self.structures),
                "projections": dict(self.projections)}

    def condition_maps(self, model, condition, sizes):
        """The maps while discovering; afterwards the steps read the projections made then, so
        a placeholder per level."""
        if condition is None or self.discovering:
            return super().condition_maps(model, condition, sizes)
        return list(range(len(sizes)))

    def conditioned(self, layer, s):
        """The projection of the whole condition map, made once per sampling call (while
        discovering), at this step's position on the current level."""
        if self.discovering:
            self.projections[layer.name] = layer(s, ctx=self)
        return self.here(self.layout["projections"][layer.name] if self.layout
                         else self.projections[layer.name])

    def here(self, value):
        """The part of a map (B, H_level, W_level, C) at the current level that this step
        computes."""
        raise NotImplementedError

    def padded_image(self, layer):
        """with_ones(image) zero-padded as `layer.padding()` pads its input, in the layer's
        compute dtype (a layer's __call__ would cast it)."""
        top, left, right = layer.padding()
        image = ops.cast(self.image, layer.compute_dtype)
        return ops.pad(with_ones(image), [[0, 0], [top, 0], [left, right], [0, 0]])


class RowStep(_Step):
    """Image row i of the vertical stack: every map is one row (B, 1, W_level, C), computed
    from the cached rows above it. Only models whose `call` goes through `ctx.vertical` (a
    stack that never sees the current row) have one; `vertical` stores its values in the state
    and the call returns None."""

    prefix = "row:"

    def active(self, level):
        return ops.equal(self.position[0] % (2 ** level), 0)

    def _rows_above(self, layer, x, top):
        """x (B, 1, W, C) below the `top` cached rows above it (those before this step)."""
        # `before`, not `get`: for a strided conv, `record_input` has already set this step's
        # rows under the same key. Above row 0: the original's zero padding.
        key = self.key(layer)
        above = self.before(key, lambda: ops.zeros((self.batch(), top) + tuple(x.shape[2:]),
                                                   x.dtype))
        return key, ops.concatenate([above, x], axis=1)

    def window(self, layer, x, top, left, right):
        if top:
            key, x = self._rows_above(layer, x, top)
            if layer.strides[0] == 1:  # a strided conv's input is recorded by `level`
                self.set(key, x[:, -top:])
        return ops.pad(x, [[0, 0], [0, 0], [left, right], [0, 0]])

    def record_input(self, owner, x):
        top = owner.padding()[0]
        if top:
            key, rows = self._rows_above(owner, x, top)
            self.set(key, rows[:, -top:])

    def shifted_input(self, layer, x, shift):
        if shift != "down":
            raise ValueError("a row step computes the vertical stack: down-shifted inputs only")
        fh = layer.filter_size[0]
        padded = self.padded_image(layer)
        above = ops.maximum(self.position[0] - 1, 0)  # down_shift: row i - 1 of the conv
        window = ops.slice(padded, [0, above, 0, 0],
                           [self.batch(), fh, padded.shape[2], padded.shape[3]])
        y = layer.convolve(window, self)
        return y * ops.cast(self.position[0] > 0, y.dtype)  # row 0: the shift's zeros

    def upsampled(self, y, level):
        return pick(y, self.position[0] // 2 ** level % 2, axis=1)

    def here(self, value):
        return pick(value, self.position[0] // 2 ** self.level_now, axis=1)

    def vertical(self, fn):
        values = fn()
        for name, value in values.items():
            self.set(f"{self.prefix}vertical/{name}", value)
        return None


class PixelStep(_Step):
    """Pixel (i, j) of the horizontal stack: every map is one position (B, 1, 1, C); the
    vertical stack's rows come from the `RowStep` of row i.

    A gated resnet's causal convolutions (`activated_conv`) buffer their input before the
    nonlinearity (C channels, not concat_elu's 2C: half the bytes a write copies) in a row
    buffer (W, B, C), position first; they apply their kernel's top row to the finished row
    above once a row and the bottom row per pixel, so a pixel reads half the weights (0.876x
    and, with the fewer ops, 0.83x and 0.87x the time, bench/RESULTS.md). Other causal
    convolutions (the strided ones) keep the row being written and the finished row above in
    buffers (B, W + left, C), batch first, so that a window is a stack of their slices in the
    kernel's (B, rows, columns, C) order, written one position per step."""

    prefix = "pixel:"

    def active(self, level):
        step = 2 ** level
        row_ok = ops.equal(self.position[0] % step, 0)
        col_ok = self.divides(step)
        if isinstance(col_ok, bool):
            return row_ok if col_ok else False
        return ops.logical_and(row_ok, col_ok)

    def divides(self, step):
        """Whether `step` divides the column: a Python bool where the phase tells."""
        k, n = self.phase
        return k % step == 0 if n % step == 0 else ops.equal(self.position[1] % step, 0)

    def row_starts(self):
        """Whether the column is 0: False where the phase tells (k > 0), else a tensor. Inside
        a level's branch the same as its column being 0."""
        return False if self.phase[0] else ops.equal(self.position[1], 0)

    def _rows(self, layer, x, top, left, level):
        """The keys and tensors of a causal conv's input rows at `level`, (B, W + left, C):
        the row being written and (top = 1) the finished row above it."""
        if top > 1:
            raise ValueError(f"{layer.name}: pixel steps keep one row above; filter height "
                             f"{top + 1} is not supported")
        width = self.image.shape[2] // 2 ** level
        keys = [self.key(layer, "row")] + ([self.key(layer, "above")] if top else [])
        make = lambda: ops.zeros((self.batch(), width + left, x.shape[-1]), x.dtype)  # noqa
        return keys, [self.get(key, make) for key in keys]

    def _write(self, layer, x, top, left, level):
        """Write x (B, 1, 1, C), the conv's input at this step's position at `level`."""
        keys, rows = self._rows(layer, x, top, left, level)
        col = self.position[1] // 2 ** level
        if top:  # a new row starts at column 0: the finished one moves up (no copy)
            self.set(keys[1], when(self.row_starts(), lambda: rows[0], lambda: rows[1]))
        # One position of a (B, W + left, C) buffer: the write that each pixel step pays for.
        self.set(keys[0], put_at(rows[0], col + left, ops.reshape(x, (-1, x.shape[-1]))))

    def window(self, layer, x, top, left, right):
        if right:
            raise ValueError(f"{layer.name}: a down-shifted convolution sees the pixels to the "
                             "right, so it cannot run one pixel at a time")
        stride = layer.strides[0]
        level_in = self.level_now - _log2(stride)
        if stride == 1:  # a strided conv's input is recorded by `level`
            self._write(layer, x, top, left, level_in)
        _, rows = self._rows(layer, x, top, left, level_in)
        start = self.position[1] // 2 ** self.level_now * stride
        cols = [ops.slice(r, [0, start, 0], [r.shape[0] or self.batch(), left + 1, r.shape[2]])
                for r in reversed(rows)]  # the row above first
        return ops.stack(cols, axis=1)  # (B, top + 1, left + 1, C)

    def record_input(self, owner, x):
        top, left, _ = owner.padding()
        self._write(owner, x, top, left, self.level_now)

    def activated_conv(self, layer, x, f):
        """A stride-1 convolution of filter height 2 in two parts: the kernel's top row over
        the finished row above, for the whole row at once when a row starts (one product of
        B * W rows, which reads the weights once a row), and its bottom row over this row's
        window, one (B, k) product a pixel (half the weights of the whole kernel's). The
        window's f values to the left are carried from the pixels before, so f runs on x alone;
        x is written into a row buffer (W, B, C), position first (one scatter for the steps
        of a loop iteration, `put_later`), that the next row's first pixel convolves."""
        if not splits_by_row(layer):
            return super().activated_conv(layer, x, f)
        left = layer.padding()[1]
        level = self.level_now
        width = self.image.shape[2] // 2 ** level
        channels, units = x.shape[-1], layer.units
        flat = ops.reshape(x, (-1, channels))
        fx = f(flat)  # (B, Cf)
        col = self.position[1] // 2 ** level if level else self.position[1]
        keys = [self.key(layer, tag) for tag in ("row", "above", "left")]
        row, held, before = (self.get(key, lambda shape=shape: ops.zeros(shape, x.dtype))
                             for key, shape in zip(keys, [
                                 (width, self.batch(), channels), (width, self.batch(), units),
                                 (self.batch(), left * fx.shape[-1])]))

        def new_row():  # `row` holds the finished row above (zeros above row 0)
            above = ops.pad(ops.transpose(row, (1, 0, 2)), [[0, 0], [left, 0], [0, 0]])
            kernel = self.kernel(layer)[:1]
            y = ops.conv(f(above)[:, None], kernel, strides=1, padding="valid")[:, 0] + layer.b
            return ops.transpose(y, (1, 0, 2)), ops.zeros_like(before)  # (W, B, units)

        held, before = when(self.row_starts(), new_row, lambda: (held, before))
        window = ops.concatenate([before, fx], axis=-1)  # (B, (left + 1) * Cf), kernel order
        self.set(keys[0], self.put_later(keys[0], row, col, flat))
        self.set(keys[1], held)
        self.set(keys[2], window[:, fx.shape[-1]:])
        parts = [ops.matmul(window, k) for k in self.bottom_kernel(layer)]
        y = parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)
        y = y + pick(held, col, axis=0)[0]
        return ops.reshape(y, (-1, 1, 1, units))

    def put_later(self, key, table, col, value):
        """table (W, ...) with entry col set to value (...), for a table that no step reads
        before the next row: by the loop iteration's last step, in one write of the values
        of its n steps (a write copies the table); at once inside a level's branch, whose
        writes cannot leave it, and where no `later` is shared."""
        k, n = self.phase
        if self.level_now or self.later is None:
            return put_first(table, col, value)
        values = self.later.setdefault(key, [])
        values.append(value)
        return table if k < n - 1 else put_span(table, col - k, ops.stack(values))

    def bottom_kernel(self, layer):
        """The bottom row of a filter-height-2 kernel as `bottom_row`'s column blocks."""
        k = self.kernels.get(bottom_key(layer))
        return bottom_row(self.kernel(layer)) if k is None else k

    def shifted_input(self, layer, x, shift):
        fh, fw = layer.filter_size
        padded = self.padded_image(layer)
        row, col = self.position
        if shift == "down":  # the conv at (i - 1, j); row 0 gets the shift's zeros
            start, valid = [0, ops.maximum(row - 1, 0), col, 0], row > 0
        else:  # the conv at (i, j - 1); column 0 gets the shift's zeros
            start, valid = [0, row, ops.maximum(col - 1, 0), 0], col > 0
        window = ops.slice(padded, start, [self.batch(), fh, fw, padded.shape[3]])
        y = layer.convolve(window, self)
        return y * ops.cast(valid, y.dtype)

    def hold(self, key, value, level):
        """A table (W_level, ...) of the level's outputs along its current row: the pixels of
        the next rows (and columns) that the level skips read theirs from it."""
        width = self.image.shape[2] // 2 ** level
        table = self.get(key, lambda: ops.zeros((width,) + tuple(ops.shape(value)), value.dtype))
        self.set(key, put_first(table, self.position[1] // 2 ** level, value))

    def held(self, key, level):
        return pick(self.current[key], self.position[1] // 2 ** level, axis=0)[0]

    def upsampled(self, y, level):
        row, col = (p // 2 ** level % 2 for p in self.position)
        return pick(pick(y, row, axis=1), col, axis=2)

    def at(self, value, level):
        return pick(value, self.position[1] // 2 ** level, axis=2)

    def here(self, value):
        step = 2 ** self.level_now
        return pick(pick(value, self.position[0] // step, axis=1), self.position[1] // step,
                     axis=2)

    def vertical(self, fn):
        prefix = f"{RowStep.prefix}vertical/"
        return {key[len(prefix):]: value for key, value in self.prev.items()
                if key.startswith(prefix)}

    def key_inputs(self, owner, x, *tensors):
        """The inputs of pixel (i, j - 1)'s keys (in raster order: the pixel before): its x
        from the image, now drawn, and the other tensors as stored by the previous step.
        Position 0 gets zeros, which its query masks out."""
        row, col = self.position
        before = ops.maximum(row * self.image.shape[2] + col - 1, 0)
        flat = ops.reshape(self.image, (self.batch(), -1, self.image.shape[3]))
        previous = [ops.cast(ops.reshape(pick(flat, before, axis=1), (-1, 1, 1, x.shape[-1])),
                             x.dtype)]
        for i, t in enumerate(tensors):
            key = self.key(owner, f"before{i}")
            previous.append(self.get(key, lambda: ops.zeros_like(t)))
            self.set(key, t)
        return tuple(previous)

    def history(self, owner, key, mixin):
        """The keys and values of every pixel before (i, j), with those of pixel (i, j - 1)
        written now (see `key_inputs`): keys (B, M, d), values [(B, M_k, d_v)] that split M,
        and the mask (1, M) of the visible positions.

        Two tables per tensor, batch first: the finished rows (B, H * W, .), written once per
        row, and the current row (B, W, .), one position per step; a table of every pixel
        written per step would copy it whole at every pixel."""
        height, width = self.image.shape[1:3]
        row, col = self.position
        before = ops.maximum(row * width + col - 1, 0)
        starts = self.row_starts()
        new_row = starts if starts is False else ops.logical_and(starts, row > 0)
        keys, values = [], []
        for tag, value in (("key", key), ("mixin", mixin)):
            value = ops.reshape(value, (-1, value.shape[-1]))
            current = self.get(self.key(owner, f"{tag}/row"), lambda: ops.zeros(
                (ops.shape(value)[0], width, value.shape[-1]), value.dtype))
            current = put_at(current, before % width, value)
            done = self.get(self.key(owner, f"{tag}/rows"), lambda: ops.zeros(
                (ops.shape(value)[0], height * width, value.shape[-1]), value.dtype))
            # A new row starts: the row just finished joins the table of finished rows.
            done = when(new_row, lambda: put_row(done, row - 1, current, height, width),
                        lambda: done)
            self.set(self.key(owner, f"{tag}/row"), current)
            self.set(self.key(owner, f"{tag}/rows"), done)
            (keys if tag == "key" else values).extend([done, current])
        visible = ops.concatenate([
            ops.repeat(ops.arange(height, dtype="int32") < row, width),
            ops.arange(width, dtype="int32") < col])
        return (ops.concatenate(keys, axis=1), values,
                ops.cast(ops.reshape(visible, (1, -1)), key.dtype))


def splits_by_row(layer):
    """Whether a pixel step computes causal conv `layer` in two kernel rows
    (`PixelStep.activated_conv`): stride 1, one row above, nothing to the right."""
    top, _, right = layer.padding()
    return top == 1 and not right and tuple(layer.strides) == (1, 1)


def bottom_key(layer):
    """The `kernels` key of a layer's `bottom_row`, made once per sampling call."""
    return layer.name + "/bottom"


# A pixel step's product with more output columns than this is made as two products of half
# the columns each (a gated resnet's second convolution: its value and its gate). On a 2-core
# CPU one (16, 640) x (640, 320) product took about twice the time of its two halves, which the
# executor runs side by side (bench/RESULTS.md).
HALVES_ABOVE = 160


def bottom_row(kernel):
    """(2, kw, C, units) -> its bottom row as a (kw * C, units) matrix, in column blocks: a
    tuple of one matrix, or of two halves where units > `HALVES_ABOVE` (and even)."""
    matrix = ops.reshape(kernel[1:], (-1, kernel.shape[-1]))
    units = kernel.shape[-1]
    if units <= HALVES_ABOVE or units % 2:
        return (matrix,)
    return (matrix[:, :units // 2], matrix[:, units // 2:])


def when(pred, then, otherwise):
    """ops.cond(pred, then, otherwise), or the one branch where pred is a Python bool."""
    if isinstance(pred, bool):
        return then() if pred else otherwise()
    return ops.cond(pred, then, otherwise)


def _log2(stride):
    return {1: 0, 2: 1}[int(stride)]
