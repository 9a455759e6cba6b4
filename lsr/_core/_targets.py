"""The target algebra: what the smoothed target ``w * q'`` of each position is made of.

Written once, and read by the loss (``combine``), its gradient and the KL term.

For class ids y (``spread`` c = 1/K for "uniform", 1/(K - 1) for "others", 1 for a
prior vector pi; ``v`` the smoothing vector: ``w``, ``pi``, ``w * pi`` or all ones)::

    w_k q'_k = eps c v_k  +  o w_y [k = y],      o = 1 - eps  (- eps c for "others")

so the target is a *background* ``eps c v`` on every class plus an *on-target* part
``o w_y`` on class y. Its mass is ``M = eps c V + o w_y`` with ``V = sum_k v_k``, and
``sum_k w_k q'_k log q'_k = E - w_y b_y log b_y + w_y (b_y + o) log(b_y + o)`` with
``b = eps c u'`` (``u' = pi`` or 1) and ``E = sum_k w_k b_k log b_k``; for a prior vector
``E = eps log(eps) V + eps sum_k w_k pi_k log pi_k``. Everything the loss needs from the
labels is then ``w_y``, ``pi_y`` (for the KL form) and the class totals ``V`` and
``sum_k w_k pi_k log pi_k``: sums over the classes (``class_values``), free of eps, which
a class-sharded computation reads from the whole vectors before cutting its slices.
Dense targets ``q`` are smoothed elementwise (``smooth_dense_targets``) and weighted:
``w * q'`` is then given whole.

``eps`` is a Python float, a 0-d array or one value per position (an array of the
positions' shape, the class axis removed: validation broadcasts it there). Every term
above is then per position: ``background`` and ``o`` like ``w_y``.
"""

from __future__ import annotations

from typing import Any

from lsr._compat import values_are_cheap
from lsr._core import _ops
from lsr._core._spec import Spec
from lsr._typing import Array, Namespace


def spread(spec: Spec) -> float:
    """c: the share of the smoothing mass per class of ``v``."""
    if spec.named_prior == "uniform":
        return 1.0 / spec.num_classes
    if spec.named_prior == "others":
        return 1.0 / (spec.num_classes - 1)
    return 1.0


def smoothing_vector(spec: Spec) -> Array | None:
    """``v``: the weights, the prior, their product, or None (all ones)."""
    if spec.named_prior is not None:
        return spec.weight
    return spec.prior if spec.weight is None else spec.prior * spec.weight


def on_target_share(spec: Spec) -> Any:
    """o: the on-target part of ``q'`` per unit of class weight."""
    keep = 1.0 - spec.smoothing
    if spec.named_prior == "others":
        return keep - spec.smoothing * spread(spec)
    return keep


def smooth_dense_targets(targets: Array, spec: Spec, *, xp: Namespace) -> Array:
    """``q' = (1 - eps) q + eps u`` for dense targets ``q`` (a new array)."""
    axis = spec.axis
    # (One epsilon per position gets the class axis back to scale its row.)
    eps = _ops.expand(xp, spec.smoothing, axis)
    if spec.named_prior == "uniform":
        return (1.0 - eps) * targets + eps * spread(spec)
    if spec.named_prior == "others":
        return (1.0 - eps) * targets + eps * spread(spec) * (1.0 - targets)
    return (1.0 - eps) * targets + eps * _ops.along_axis(xp, spec.prior, targets.ndim, axis)


def kept_positions(labels: Array, spec: Spec, *, xp: Namespace) -> Array | None:
    """The positions that count (boolean, the positions' shape): not ``ignore_index``
    (class ids) and inside ``where``; None when nothing is left out by the options."""
    keep = None
    if not spec.dense and spec.ignore_index is not None:
        keep = labels != spec.ignore_index
    if spec.where is not None:
        keep = spec.where if keep is None else keep & spec.where
    return keep


class Positions:
    """Which positions count, and their class ids made safe to index with.

    ``valid``: the kept positions (``where`` and ``ignore_index``), or None for all.
    ``out_of_range``: ids outside [0, K) that are kept, or None. Under tracing they cannot
    raise, and they must never give a plausible number: the loss is NaN there
    (``mask``). With ``spec.checked`` (the ids are known to be in range) the guard is not
    built, and a ``valid`` that keeps everything becomes None where that can be read
    (not for ids traced again inside an adapter's own jit).
    """

    # ``Array`` admits None: ``safe_labels`` is None for dense targets.
    safe_labels: Array
    valid: Array
    out_of_range: Array

    def __init__(self, xp: Namespace, labels: Array, spec: Spec, *, like: Array):
        self.dense = spec.dense
        self.out_of_range = None
        if spec.dense:
            self.safe_labels = None
            self.valid = spec.where
            return
        keep = kept_positions(labels, spec, xp=xp)
        dtype = _ops.index_dtype(xp, like)
        if spec.checked:
            # (The ids were read when validated, or are left to a computation that
            # raises on a bad one; inside an adapter's own jit they are
            # traced again, and the mask then stays.) A checked ``ignore_index`` is one
            # that some id of the call equals (validation drops it otherwise), so the
            # test that every position is kept is made for a ``where`` mask only. (A
            # block of rows of a call may still hold no ignored id: its mask then keeps
            # everything, correct and one select slower.)
            if keep is not None and spec.where is not None:
                everything = xp.all(keep)
                if values_are_cheap(everything) and bool(everything):
                    keep = None
            safe = labels if keep is None else xp.where(keep, labels, 0)
        else:
            in_range = (labels >= 0) & (labels < spec.num_classes)
            self.out_of_range = ~in_range if keep is None else (~in_range) & keep
            safe = xp.where(in_range, labels, 0)
        self.valid = keep
        self.safe_labels = safe if safe.dtype == dtype else xp.astype(safe, dtype)

    @classmethod
    def all_kept(cls, safe_labels: Array) -> Positions:
        """The positions of class ids known to be in range, none left out (what the
        constructor makes for such ids under a checked spec without ``ignore_index``
        or ``where``), from ids already in the index dtype."""
        positions = object.__new__(cls)
        positions.dense = False
        positions.safe_labels, positions.valid, positions.out_of_range = safe_labels, None, None
        return positions

    def mask(self, xp: Namespace, values: Array) -> Array:
        """NaN at out-of-range labels, then 0 at positions that are not kept."""
        if self.out_of_range is not None:
            # A factor of NaN rather than a NaN constant: differentiating the result
            # (autodiff through the core) then gives NaN at the bad position too, where
            # a select would pass it a zero gradient.
            values = values * xp.where(self.out_of_range, xp.nan, xp.ones_like(values))
        if self.valid is not None:
            values = xp.where(self.valid, values, 0.0)
        return values


class Shard:
    """The classes ``[start, start + size)`` of K that a class-sharded pass holds, and
    where each position's class id falls in them."""

    def __init__(self, xp: Namespace, positions: Positions, start: Any, size: int):
        self.start, self.size = start, size
        local = positions.safe_labels - start
        self.holds = (local >= 0) & (local < size)
        self.local_ids = xp.where(self.holds, local, 0)


def class_values(xp: Namespace, spec: Spec, positions: Positions) -> dict[str, Any]:
    """What the loss needs of the (K,) vectors, for class ids: per position ``w_y``
    (``"target_weight"``) and, for the KL form with a prior vector, ``pi_y``; the class
    totals ``W = sum_k w_k`` (named priors) or ``V = sum_k v_k`` and ``sum_k w_k pi_k log
    pi_k`` (a vector; ``set_values`` makes ``E`` of it with each position's eps).
    ``spec``'s vectors are whole (a class-sharded pass reads them before cutting its
    slices); every Python float is already the value for all K classes.
    """
    ids = positions.safe_labels
    values: dict[str, Any] = {
        "target_weight": 1.0 if spec.weight is None else _ops.take(xp, spec.weight, ids)
    }
    if spec.named_prior is not None:
        values["weight_total"] = (
            float(spec.num_classes) if spec.weight is None else xp.sum(spec.weight)
        )
        return values
    vector = smoothing_vector(spec)
    values["vector_total"] = xp.sum(vector)
    if spec.kl:
        values["target_prior"] = _ops.take(xp, spec.prior, ids)
        per_class = _ops.xlogx(xp, spec.prior)
        if spec.weight is not None:
            per_class = per_class * spec.weight
        values["prior_entropy_total"] = xp.sum(per_class)
    return values


class Targets:
    """Each position's smoothed target in the algebra above, from the labels alone.

    Made once per call (and sliced per block of rows with ``block``), or, where every
    term is a Python float, completed from a template of an earlier call's
    (``without_ids``, ``with_ids``): ``mass`` (M),
    ``on_target`` (``o w_y``), ``background`` (``eps c``, the factor of ``v``) and, for
    the KL form, ``entropy`` (``sum_k w_k q'_k log q'_k``), all with the class axis
    removed (each a float or 0-d when it is the same for every position); dense targets
    keep ``weighted`` (``w * q'``, the logits' shape). After
    ``scale_by``, the gradient's factors, each times its position's cotangent.
    """

    # Per-position arrays (leading axis = rows) that ``block`` slices.
    _PER_POSITION = ("scale", "factor", "mass", "index", "correction", "holds", "background_scaled")

    # Arrays or Python floats; ``Array`` admits the None of the terms that do not apply
    # (dense targets, no shard, the KL form off, before ``set_values`` or ``scale_by``).
    index: Array
    holds: Array
    on_target: Array
    background: Array
    target_weight: Array
    entropy: Array
    scale: Array
    factor: Array
    correction: Array
    background_vector: Array
    background_scaled: Array

    def __init__(
        self,
        xp: Namespace,
        labels: Array,
        spec: Spec,
        positions: Positions,
        *,
        like: Array,
        values: dict[str, Any] | None = None,
        shard: Shard | None = None,
    ):
        self.xp, self.spec, self.positions, self.like = xp, spec, positions, like
        self.shard = shard
        self.scale = self.factor = self.correction = None
        self.background_vector = self.background_scaled = None
        if spec.dense:
            weighted = smooth_dense_targets(labels, spec, xp=xp)
            if spec.kl:
                entropy = _ops.xlogx(xp, weighted)
            if spec.weight is not None:
                weighted = weighted * _ops.along_axis(xp, spec.weight, labels.ndim, spec.axis)
                if spec.kl:
                    entropy = entropy * _ops.along_axis(xp, spec.weight, labels.ndim, spec.axis)
            self.weighted = weighted
            self.mass = xp.sum(weighted, axis=spec.axis)
            self.entropy = xp.sum(entropy, axis=spec.axis) if spec.kl else None
            self.index = self.holds = None
            self.on_target = self.background = None
            self.target_weight = None
            return
        ids = positions.safe_labels if shard is None else shard.local_ids
        self.index = _index(xp, ids, spec)
        self.holds = None if shard is None else xp.expand_dims(shard.holds, axis=spec.axis)
        if values is None and shard is None:
            values = class_values(xp, spec, positions)
        if values is not None:
            self.set_values(values)

    def set_values(self, values: dict[str, Any]) -> None:
        """The terms of class ids' targets from ``class_values`` (for a shard: summed
        over all shards)."""
        xp, spec = self.xp, self.spec
        eps = spec.smoothing
        c = spread(spec)
        o = on_target_share(spec)
        target_weight = values["target_weight"]
        self.target_weight = target_weight
        self.background = eps * c
        self.on_target = o * target_weight
        total = values.get("weight_total", values.get("vector_total"))
        if spec.weight is None and spec.named_prior is not None:
            # A smoothed distribution: its mass is 1 exactly (eps c K + o is 1 only up
            # to rounding, and a mass of exactly 1 costs no multiplication).
            self.mass = 1.0
        else:
            self.mass = self.background * total + self.on_target
        self.entropy = None
        if spec.kl:
            if spec.named_prior is not None:
                background_entropy = total * _ops.xlogx(xp, self.background)
                b_y = self.background
            else:
                # E = sum_k w_k (eps pi_k) log(eps pi_k), with eps out of the class sum
                # so that it may differ per position.
                background_entropy = (
                    total * _ops.xlogx(xp, self.background)
                    + self.background * values["prior_entropy_total"]
                )
                b_y = self.background * values["target_prior"]
            self.entropy = (
                background_entropy
                - target_weight * _ops.xlogx(xp, b_y)
                + target_weight * _ops.xlogx(xp, b_y + o)
            )

    def mean_denominator(self) -> Any:
        """PyTorch's rule: the sum of ``w_y`` over kept positions for class ids with
        weights, else the number of kept positions (``denominator_rule`` of
        ``denominator_parts``)."""
        return denominator_rule(self.xp, *self.denominator_parts())

    def denominator_parts(self) -> tuple[Any, Any]:
        """``(number of kept positions, sum of their w_y or None)``: sums over positions,
        which processes that split a batch add up before ``denominator_rule``."""
        xp, positions = self.xp, self.positions
        dtype = self.like.dtype
        if positions.valid is None:
            count: int | Array = _prod(self._position_shape())
        else:
            if hasattr(xp, "count_nonzero"):
                # (One pass over the mask; a boolean converted to floats is a slow
                # kernel in PyTorch on the CPU.)
                count = xp.count_nonzero(positions.valid)
            else:
                count = xp.sum(xp.astype(positions.valid, dtype))
            # A Python number where reading it is cheap: the mean's scale is then one
            # float, not a few 0-d operations (a select against a count of 0 among them)
            # at every use; exact, as an integer.
            count = int(count) if values_are_cheap(count) else xp.astype(count, dtype)
        if self.spec.weight is None or self.spec.dense:
            return count, None
        target_weight = self.target_weight  # one per position (there are weights)
        if positions.valid is not None:
            target_weight = xp.where(positions.valid, target_weight, 0.0)
        return count, xp.sum(target_weight)

    def _position_shape(self) -> tuple[int, ...]:
        if self.spec.dense:
            shape = tuple(self.weighted.shape)
            return shape[: self.spec.axis] + shape[self.spec.axis + 1 :]
        return tuple(self.positions.safe_labels.shape)

    def scale_by(self, scale: Any, *, in_place: bool = False) -> None:
        """Fold in each position's cotangent (a float, 0-d, or the positions' shape):
        the gradient ``scale * (M softmax(z) - w q')`` then needs only the logits.

        ``in_place``: the gradient will be made by ``add_along_axis`` where the namespace
        offers it (a scatter-add takes one value per index)."""
        xp, spec, positions = self.xp, self.spec, self.positions
        axis, dtype = spec.axis, self.like.dtype
        # A float cotangent with nothing to mask stays one float for every position;
        # otherwise there is one (masked) value per position.
        if not (
            _ops.is_number(scale) and positions.valid is None and positions.out_of_range is None
        ):
            # (ones_like rather than ones: it also works for unknown dimensions under
            # tf.function.)
            like = self.mass if spec.dense else positions.safe_labels
            ones = xp.ones_like(like, dtype=dtype)
            scale = ones * (scale if _ops.is_number(scale) else xp.astype(scale, dtype))
            scale = xp.expand_dims(positions.mask(xp, scale), axis=axis)
        self.scale = scale
        mass = self.mass
        self.factor = (
            scale if _ops.is_number(mass) and mass == 1.0 else _ops.expand(xp, mass, axis) * scale
        )
        if spec.dense:
            return
        vector = smoothing_vector(spec)
        # The gradient subtracts ``background * scale`` (times ``v`` when there is one):
        # one value per position, or one float, with the class axis kept.
        self.background_scaled = _ops.expand(xp, self.background, axis) * scale
        if vector is None:
            self.background_vector = None
        else:
            self.background_vector = _ops.along_axis(xp, vector, self.like.ndim, axis)
        on_target = self.on_target
        if _ops.is_number(on_target):
            correction = scale * -on_target
        else:
            correction = -(_ops.expand(xp, on_target, axis) * scale)
        if self.holds is not None:
            correction = xp.where(self.holds, correction, 0.0)
        if in_place and getattr(xp, "add_along_axis", None) is not None:
            # (A float stays one: ``add_along_axis`` takes one value for every index.)
            if not _ops.is_number(correction):
                correction = xp.astype(
                    xp.broadcast_to(correction, self.index.shape), dtype, copy=False
                )
        self.correction = correction

    def softmax_factor(self, lse: Any) -> Any:
        """The cotangent times ``M + 2 z_loss lse`` (``lse``, class axis kept, is read
        only with a z-loss)."""
        if not self.spec.z_loss:
            return self.factor
        mass = _ops.expand(self.xp, self.mass, self.spec.axis)
        # (A row of all -inf, ignored or not, has no softmax to scale: 0, not 0 * -inf.)
        lse = _ops.finite_or_zero(self.xp, lse)
        return self.scale * (mass + 2.0 * self.spec.z_loss * lse)

    # What ``without_ids`` leaves out: the arrays of one call's labels and logits.
    _OF_ONE_CALL = ("xp", "positions", "like", "index")

    def without_ids(self) -> Targets | None:
        """These targets without their class ids, where every other term is a Python
        float (or None): class ids, every position kept, one smoothing for all and no
        vector among the options, no shard. A template that ``with_ids`` completes for
        other ids of the same positions' shape (the terms and the cotangents folded in by
        ``scale_by`` depend on nothing else); None where some term is an array. It holds
        no array, so it may outlive the call that made it."""
        if self.spec.dense or self.shard is not None or self.spec.has_arrays():
            return None
        if self.positions.valid is not None or self.positions.out_of_range is not None:
            return None
        terms = {
            name: value
            for name, value in self.__dict__.items()
            if name not in self._OF_ONE_CALL and name not in ("spec", "shard")
        }
        if not all(value is None or type(value) is float for value in terms.values()):
            return None
        template = object.__new__(Targets)
        template.__dict__.update(terms, spec=self.spec, shard=None)
        template.__dict__.update(dict.fromkeys(self._OF_ONE_CALL))
        return template

    def with_ids(self, xp: Namespace, ids: Array, *, like: Array) -> Targets:
        """A template of ``without_ids`` completed with class ids (in range, already in
        the index dtype, of the template's positions' shape): the targets that the
        constructor would make of them, without computing any term again."""
        targets = object.__new__(Targets)
        targets.__dict__.update(self.__dict__)
        targets.xp, targets.like = xp, like
        targets.positions = Positions.all_kept(ids)
        targets.index = _index(xp, ids, self.spec)
        return targets

    def block(self, index: Any) -> Targets:
        """These targets for the rows ``index`` of the leading axis (``...``: all)."""
        if index is ...:
            return self
        part = object.__new__(Targets)
        part.__dict__.update(self.__dict__)
        for name in self._PER_POSITION:
            value = getattr(self, name, None)
            if value is not None and not _ops.is_number(value) and value.ndim > 0:
                setattr(part, name, _ops.rows(value, index))
        if self.spec.dense:
            part.weighted = _ops.rows(self.weighted, index)
        return part


def _index(xp: Namespace, ids: Array, spec: Spec) -> Array:
    """The class ids with the class axis back (size 1), to gather and scatter along it."""
    return xp.expand_dims(ids, axis=spec.axis)


def denominator_rule(xp: Namespace, count: Any, weight_total: Any) -> Any:
    """The "mean" reduction's denominator: ``weight_total`` (with class weights) or
    ``count``.

    The sum of weights is used whatever its sign (negative weights are allowed, as in
    PyTorch) and NaN propagates. 0 means "no position kept" (the mean is then 0); kept
    positions whose weights sum to exactly 0 give NaN instead (PyTorch's 0/0), never a
    mean of 0 that would look like a perfect loss.
    """
    if weight_total is None:
        return count
    if _ops.is_number(count):
        return xp.where(weight_total == 0, xp.nan, weight_total) if count else weight_total
    return xp.where((weight_total == 0) & (count > 0), xp.nan, weight_total)


def _prod(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
