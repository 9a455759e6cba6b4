"""What each rank of the gloo process groups in test_torch_distributed.py runs.

The cases (inputs, options, shard layouts) are defined here once and rebuilt by the test
from the same seeds, so a worker only computes and saves its results; every comparison
happens in the test process, against a plain float64 reference.

Run as ``python -m tests.distributed._torch_worker RANK WORLD_SIZE INIT_FILE OUT_DIR``.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lsr.torch import data_parallel_smooth_bce, data_parallel_smooth_ce, vocab_parallel_smooth_ce

IGNORE = -100
NUM_CLASSES = 13
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}

# Uneven class slices, so that a local K differs between ranks and from K / P.
SHARD_SIZES = {1: (13,), 2: (6, 7), 4: (3, 4, 2, 4)}

# Vocabulary-parallel cases: name -> (logits shape with the class axis, axis, options).
# Labels hold ids of every shard, some ignore_index, unless the name says otherwise.
_POSITIONS = (3, 4)
VOCAB_CASES = {
    "uniform-mean": {"smoothing": 0.1},
    "uniform-sum": {"smoothing": 0.2, "reduction": "sum"},
    "uniform-none": {"smoothing": 0.3, "reduction": "none"},
    "uniform-eps0": {"smoothing": 0.0},
    "others-mean": {"smoothing": 0.1, "prior": "others"},
    "others-none": {"smoothing": 0.4, "prior": "others", "reduction": "none"},
    "prior-mean": {"smoothing": 0.2, "prior": "vector"},
    "prior-sum": {"smoothing": 0.2, "prior": "vector", "reduction": "sum"},
    "weight-uniform-mean": {"smoothing": 0.1, "weight": True},
    "weight-others-sum": {"smoothing": 0.2, "prior": "others", "weight": True, "reduction": "sum"},
    "weight-prior-none": {"smoothing": 0.3, "prior": "vector", "weight": True, "reduction": "none"},
    "weight-prior-mean": {"smoothing": 0.3, "prior": "vector", "weight": True},
    # Each rank passes only its slice of the prior and weight vectors.
    "sliced-weight-prior-sum": {
        "smoothing": 0.3,
        "prior": "vector",
        "weight": True,
        "reduction": "sum",
        "sliced_vectors": True,
    },
    "kl-zloss-uniform": {"smoothing": 0.1, "kl": True, "z_loss": 1e-2},
    "kl-weight-others": {"smoothing": 0.2, "prior": "others", "weight": True, "kl": True},
    "kl-weight-prior-none": {
        "smoothing": 0.2,
        "prior": "vector",
        "weight": True,
        "kl": True,
        "reduction": "none",
    },
    "where-mean": {"smoothing": 0.1, "where": True},
    # smoothing as a 0-d tensor (as a schedule would pass it).
    "tensor-smoothing-others": {
        "smoothing": np.array(0.25),
        "prior": "others",
        "weight": True,
        "z_loss": 1e-2,
    },
    "axis1-mean": {"smoothing": 0.1, "axis": 1},
    "all-ignored-mean": {"smoothing": 0.1, "all_ignored": True},
    # The entropy's sum is all-reduced with the others; its gradient needs the global
    # sum_k p_k log p_k, saved by the forward pass.
    "penalty-softcap-mean": {"smoothing": 0.1, "confidence_penalty": 0.3, "softcap": 4.0},
    "penalty-weight-none": {
        "smoothing": 0.2,
        "prior": "others",
        "weight": True,
        "confidence_penalty": 0.5,
        "reduction": "none",
    },
}

# Data-parallel cases: the batch is split unevenly and rank 0's part is mostly ignored.
DATA_CASES = {
    "dp-uniform-mean": {"smoothing": 0.1},
    "dp-weight-mean": {"smoothing": 0.1, "weight": True},
    "dp-others-sum": {"smoothing": 0.2, "prior": "others", "reduction": "sum"},
    "dp-kl-zloss-mean": {"smoothing": 0.1, "prior": "vector", "kl": True, "z_loss": 1e-2},
    "dp-dense-mean": {"smoothing": 0.1, "dense": True},
    # Rank 0's kept positions have weight 0: its own denominator is 0 (PyTorch's 0/0 would
    # be NaN), the global one is not, and the global mean must be finite.
    "dp-zero-weight-rank-mean": {"smoothing": 0.1, "weight": True, "zero_weight_rank0": True},
    "dp-penalty-softcap-sum": {
        "smoothing": 0.1,
        "confidence_penalty": 0.3,
        "softcap": 4.0,
        "reduction": "sum",
    },
}


# Data-parallel sigmoid (multi-label) cases: the batch split unevenly, rank 0's elements
# mostly left out (ignore_index or where), so a mean of rank means is not the batch mean.
NUM_LABELS = 5
BINARY_CASES = {
    "bce-mean-ignore": {"smoothing": 0.1, "prior": 0.5, "ignore": True},
    "bce-mean-where-pos-weight": {
        "smoothing": 0.2,
        "prior": "vector",
        "where": True,
        "pos_weight": True,
    },
    "bce-sum-weight": {"smoothing": 0.3, "prior": 0.0, "weight": True, "reduction": "sum"},
    "bce-none": {"smoothing": 0.1, "prior": 0.5, "reduction": "none"},
    # smoothing as a 0-d tensor that needs a gradient: autograd through the core's ops,
    # with the global sum differentiable in this rank's part.
    "bce-mean-smoothing-grad": {"smoothing": "tensor", "prior": 0.5, "ignore": True},
}


def tied_inputs() -> tuple[np.ndarray, np.ndarray]:
    """Logits (6, 4, K) with ties for the maximum inside one rank's classes and across
    ranks, labels on either side of them, some ignored: what ``return_aux``'s
    correctness (the first maximum) is checked on."""
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(6, 4, NUM_CLASSES))
    labels = rng.integers(0, NUM_CLASSES, size=(6, 4))
    logits[0, 0] = 1.0  # constant: only class 0 is the first maximum
    labels[0, 0] = 0
    logits[0, 1] = 1.0
    labels[0, 1] = NUM_CLASSES - 1
    logits[0, 2, [1, 12]] = 9.0  # a tie across ranks (of every layout)
    labels[0, 2] = 1
    logits[0, 3, [1, 12]] = 9.0
    labels[0, 3] = 12
    logits[1, 0, [9, 10]] = 9.0  # a tie on one rank (of every layout)
    labels[1, 0] = 10
    labels[2, 1:3] = IGNORE
    return logits, labels


def binary_inputs(name: str, world_size: int, seed: int) -> tuple[dict, list[slice]]:
    """The global batch of a data-parallel sigmoid case (float64, 0/1 integer targets with
    -1 for ignored elements when the case ignores), and each rank's slice of it."""
    options = dict(BINARY_CASES[name])
    rng = np.random.default_rng(seed)
    counts = [2 + 2 * r for r in range(world_size)]
    bounds = np.cumsum([0, *counts])
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    shape = (int(bounds[-1]), NUM_LABELS)
    logits = rng.normal(scale=3.0, size=shape)
    labels = rng.integers(0, 2, size=shape)
    keep = np.ones(shape, dtype=bool)
    if options.pop("ignore", False):
        keep[slices[0]] = False
        keep[slices[0].start, 0] = True  # rank 0 keeps one element
        keep &= rng.random(shape) < 0.9
        labels[~keep] = -1
        options["ignore_index"] = -1
    if options.pop("where", False):
        keep[slices[0]] = False
        keep[slices[0].start, 1] = True
        options["where"] = keep.copy()
    if options["prior"] == "vector":
        options["prior"] = rng.uniform(0.0, 1.0, size=NUM_LABELS)
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.5, 2.0, size=shape)
    if options.pop("pos_weight", False):
        options["pos_weight"] = rng.uniform(0.5, 3.0, size=NUM_LABELS)
    options.setdefault("reduction", "mean")
    cotangent = rng.normal(size=shape) if options["reduction"] == "none" else 0.7
    return {
        "logits": logits,
        "labels": labels,
        "keep": keep,
        "options": options,
        "cotangent": cotangent,
    }, slices


def vocab_inputs(name: str, seed: int) -> dict:
    """The full (unsharded) float64 inputs of a vocabulary-parallel case."""
    options = dict(VOCAB_CASES[name])
    rng = np.random.default_rng(seed)
    axis = options.pop("axis", -1)
    sliced_vectors = options.pop("sliced_vectors", False)
    shape = (*_POSITIONS, NUM_CLASSES) if axis == -1 else (_POSITIONS[0], NUM_CLASSES, 5)
    positions = shape[:axis] + shape[axis + 1 :] if axis != -1 else shape[:-1]
    logits = rng.normal(scale=3.0, size=shape)
    labels = rng.integers(0, NUM_CLASSES, size=positions)
    labels[rng.random(positions) < 0.25] = IGNORE
    if options.pop("all_ignored", False):
        labels[...] = IGNORE
    case = _finish(options, rng, logits, labels, axis, positions)
    case["sliced_vectors"] = sliced_vectors
    return case


def data_inputs(name: str, world_size: int, seed: int) -> tuple[dict, list[slice]]:
    """The global batch of a data-parallel case, and each rank's slice of it."""
    options = dict(DATA_CASES[name])
    zero_weight_rank0 = options.pop("zero_weight_rank0", False)
    rng = np.random.default_rng(seed)
    counts = [2 + 2 * r for r in range(world_size)]
    bounds = np.cumsum([0, *counts])
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    logits = rng.normal(scale=3.0, size=(int(bounds[-1]), NUM_CLASSES))
    labels = rng.integers(0, NUM_CLASSES, size=int(bounds[-1]))
    # Rank 0 keeps one position; a mean of per-rank means would weight it like a rank.
    labels[slices[0].start + 1 : slices[0].stop] = IGNORE
    if options.pop("dense", False):
        dense = rng.random((int(bounds[-1]), NUM_CLASSES))
        labels = dense / dense.sum(axis=-1, keepdims=True)
    case = _finish(options, rng, logits, labels, -1, (int(bounds[-1]),))
    if zero_weight_rank0:
        kept = int(labels[slices[0].start])  # rank 0's one kept position
        labels[slices[1].start :][labels[slices[1].start :] == kept] = (kept + 1) % NUM_CLASSES
        case["options"]["weight"][kept] = 0.0
    return case, slices


def _finish(options, rng, logits, labels, axis, positions):
    if options.pop("prior", "uniform") == "vector":
        prior = rng.random(NUM_CLASSES) + 0.1
        options["prior"] = prior / prior.sum()
    elif "prior" not in options:
        options["prior"] = "uniform"
    if options.pop("weight", False):
        options["weight"] = rng.uniform(0.5, 2.0, size=NUM_CLASSES)
    if options.pop("where", False):
        options["where"] = rng.random(positions) < 0.7
    options.setdefault("reduction", "mean")
    options.setdefault("kl", False)
    options.setdefault("z_loss", 0.0)
    cotangent = rng.normal(size=positions) if options["reduction"] == "none" else 0.7
    return {
        "logits": logits,
        "labels": labels,
        "axis": axis,
        "options": options,
        "cotangent": cotangent,
    }


def aux_rows(world_size: int, rank: int) -> slice:
    """A rank's rows of ``tied_inputs`` for the data-parallel form: uneven."""
    bounds = {1: (0, 6), 2: (0, 1, 6), 4: (0, 1, 2, 4, 6)}[world_size]
    return slice(bounds[rank], bounds[rank + 1])


def class_slice(world_size: int, rank: int) -> slice:
    sizes = SHARD_SIZES[world_size]
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _torch_options(options: dict, dtype: torch.dtype) -> dict:
    # Class vectors of half-precision inputs stay float32 (rounding a prior to bfloat16
    # would make it no longer sum to 1).
    dtype = torch.float32 if dtype == torch.bfloat16 else dtype
    converted = {}
    for key, value in options.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
            value = value if value.dtype == torch.bool else value.to(dtype)
        converted[key] = value
    return converted


def _run(function, logits, labels, options, cotangent, **kwargs):
    logits = logits.clone().requires_grad_(True)
    loss = function(logits, labels, **options, **kwargs)
    loss.backward(torch.as_tensor(cotangent, dtype=loss.dtype))
    return loss.detach(), logits.grad


def _naive_local_smoothing(logits_shard, labels, smoothing, group):
    """Megatron-LM's per-shard smoothing (its issues #737, #7464), for the test to reject.

    The logsumexp and target logit are combined correctly, but the smoothing term averages
    the log-probabilities over this rank's classes only: uniform over the LOCAL K.
    """
    row_max = logits_shard.amax(dim=-1, keepdim=True)
    dist.all_reduce(row_max, op=dist.ReduceOp.MAX, group=group)
    sum_exp = torch.exp(logits_shard - row_max).sum(dim=-1)
    dist.all_reduce(sum_exp, group=group)
    lse = torch.log(sum_exp) + row_max.squeeze(-1)
    start = class_slice(dist.get_world_size(group), dist.get_rank(group)).start
    local = labels - start
    inside = (local >= 0) & (local < logits_shard.shape[-1])
    target = torch.gather(logits_shard, -1, local.clamp(0, logits_shard.shape[-1] - 1)[..., None])
    target = torch.where(inside, target.squeeze(-1), torch.zeros_like(lse))
    dist.all_reduce(target, group=group)
    local_mean = logits_shard.mean(dim=-1)
    loss = (1 - smoothing) * (lse - target) + smoothing * (lse - local_mean)
    keep = labels != IGNORE
    return torch.where(keep, loss, torch.zeros_like(loss)).sum() / keep.sum()


class _CountingAllReduce:
    """Wraps ``dist.all_reduce`` to record each call's payload (bytes) and operation."""

    def __init__(self):
        self.calls = []
        self._original = dist.all_reduce

    def __call__(self, tensor, op=dist.ReduceOp.SUM, group=None, async_op=False):
        self.calls.append((tensor.numel() * tensor.element_size(), str(op).rsplit(".", 1)[-1]))
        return self._original(tensor, op=op, group=group, async_op=async_op)


def main(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    results = {}
    classes = class_slice(world_size, rank)
    for case_index, name in enumerate(VOCAB_CASES):
        case = vocab_inputs(name, seed=case_index)
        index = [slice(None)] * case["logits"].ndim
        index[case["axis"]] = classes
        for dtype_name, dtype in DTYPES.items():
            shard = torch.from_numpy(np.ascontiguousarray(case["logits"][tuple(index)])).to(dtype)
            labels = torch.from_numpy(case["labels"])
            options = _torch_options(case["options"], dtype)
            if case["sliced_vectors"]:
                options["prior"] = options["prior"][classes]
                options["weight"] = options["weight"][classes]
            results[(name, dtype_name)] = _run(
                vocab_parallel_smooth_ce,
                shard,
                labels,
                options,
                case["cotangent"],
                axis=case["axis"],
                ignore_index=IGNORE,
            )

    # return_aux: vocabulary-parallel over this group's classes, and data-parallel over
    # uneven rows of the same inputs.
    logits, labels = tied_inputs()
    for reduction in ("mean", "sum", "none"):
        options = dict(smoothing=0.1, ignore_index=IGNORE, reduction=reduction, softcap=20.0)
        shard = torch.from_numpy(np.ascontiguousarray(logits[..., classes]))
        _, aux = vocab_parallel_smooth_ce(
            shard, torch.from_numpy(labels), return_aux=True, **options
        )
        results[("aux-vocab", reduction)] = aux
        rows = aux_rows(world_size, rank)
        _, aux = data_parallel_smooth_ce(
            torch.from_numpy(logits[rows]),
            torch.from_numpy(labels[rows]),
            axis=-1,
            return_aux=True,
            **options,
        )
        results[("aux-data", reduction)] = aux

    # Megatron's per-shard smoothing on the first case, to show the comparison rejects it.
    case = vocab_inputs("uniform-mean", seed=0)
    shard = torch.from_numpy(np.ascontiguousarray(case["logits"][..., classes]))
    results["naive-local-K"] = _naive_local_smoothing(
        shard, torch.from_numpy(case["labels"]), case["options"]["smoothing"], None
    )

    # The all-reduces of one forward and backward pass (the shard sizes are all-gathered).
    counter = _CountingAllReduce()
    dist.all_reduce = counter
    try:
        case = vocab_inputs("weight-prior-mean", seed=0)
        shard = torch.from_numpy(np.ascontiguousarray(case["logits"][..., classes])).float()
        forward_backward = _run(
            vocab_parallel_smooth_ce,
            shard,
            torch.from_numpy(case["labels"]),
            _torch_options(case["options"], torch.float32),
            case["cotangent"],
            ignore_index=IGNORE,
        )
        del forward_backward
    finally:
        dist.all_reduce = counter._original
    results["all_reduce_calls"] = counter.calls

    for case_index, name in enumerate(DATA_CASES):
        case, slices = data_inputs(name, world_size, seed=100 + case_index)
        mine = slices[rank]
        for dtype_name, dtype in DTYPES.items():
            labels = torch.from_numpy(case["labels"][mine])
            if labels.is_floating_point():
                labels = labels.to(torch.float32 if dtype == torch.bfloat16 else dtype)
            results[(name, dtype_name)] = _run(
                data_parallel_smooth_ce,
                torch.from_numpy(case["logits"][mine]).to(dtype),
                labels,
                _torch_options(case["options"], dtype),
                case["cotangent"],
                ignore_index=IGNORE,
            )

    for case_index, name in enumerate(BINARY_CASES):
        case, slices = binary_inputs(name, world_size, seed=200 + case_index)
        mine = slices[rank]
        for dtype_name, dtype in DTYPES.items():
            # Options of half-precision inputs stay float32, as the loss is computed in it.
            options_dtype = torch.float32 if dtype == torch.bfloat16 else dtype
            options = {}
            for key, value in case["options"].items():
                if isinstance(value, np.ndarray):
                    # Element-shaped arrays are this rank's rows; per-label ones are whole.
                    value = value[mine] if value.shape[0] == case["logits"].shape[0] else value
                    value = torch.from_numpy(np.ascontiguousarray(value))
                    value = value if value.dtype == torch.bool else value.to(options_dtype)
                elif value == "tensor":
                    value = torch.tensor(0.15, dtype=options_dtype, requires_grad=True)
                options[key] = value
            results[(name, dtype_name)] = _run(
                data_parallel_smooth_bce,
                torch.from_numpy(case["logits"][mine]).to(dtype),
                torch.from_numpy(case["labels"][mine]),
                options,
                case["cotangent"][mine] if options["reduction"] == "none" else case["cotangent"],
            )
            if isinstance(options["smoothing"], torch.Tensor):
                results[(name, dtype_name, "smoothing-grad")] = options["smoothing"].grad

    if world_size == 2:
        # DistributedDataParallel imports torch._dynamo (seconds per process): one group.
        results["ddp"] = _ddp_gradients(rank, world_size)
    results["errors"] = _bad_input_errors(rank, world_size)
    if world_size == 4:
        results.update(_two_dimensional(rank))
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def ddp_problem(world_size: int):
    """A linear model and a global batch split unevenly, rank 0's part mostly ignored."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, NUM_CLASSES, dtype=torch.float64)
    case, slices = data_inputs("dp-weight-mean", world_size, seed=11)
    features = np.random.default_rng(12).normal(size=(case["labels"].shape[0], 5))
    return model, torch.from_numpy(features), torch.from_numpy(case["labels"]), slices, case


def _ddp_gradients(rank: int, world_size: int) -> dict:
    """The documented recipe: DistributedDataParallel with ``loss * world_size``."""
    model, features, labels, slices, case = ddp_problem(world_size)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    weight = torch.from_numpy(case["options"]["weight"])
    loss = data_parallel_smooth_ce(
        ddp(features[slices[rank]]), labels[slices[rank]], weight=weight, smoothing=0.1
    )
    # DDP averages gradients over ranks; the loss is already the global-batch mean.
    (loss * world_size).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _bad_input_errors(rank: int, world_size: int) -> dict:
    """Bad input must raise on every rank (none left waiting in a collective)."""
    classes = class_slice(world_size, rank)
    case = vocab_inputs("uniform-mean", seed=0)
    shard = torch.from_numpy(np.ascontiguousarray(case["logits"][..., classes]))
    labels = torch.from_numpy(case["labels"])
    num_local = shard.shape[-1]
    attempts = {
        # A label of the last class is valid globally; K itself is not.
        "label-equal-to-K": {"labels": torch.full_like(labels, NUM_CLASSES)},
        # Neither this rank's slice nor the whole vector.
        "prior-of-wrong-length": {"prior": torch.full((num_local + 1,), 0.1, dtype=torch.float64)},
        "weight-of-wrong-length": {"weight": torch.ones(num_local + 1, dtype=torch.float64)},
        # Slices that each sum to 1: gathered, the prior sums to the number of ranks.
        "prior-slices-each-summing-to-1": {
            "prior": torch.full((num_local,), 1.0 / num_local, dtype=torch.float64)
        },
        "dense-labels": {"labels": torch.zeros(shard.shape, dtype=torch.float64)},
        "wrong-shard-sizes": {"shard_sizes": (1,) * world_size},
        "smoothing-above-1": {"smoothing": 1.5},
    }
    errors = {}
    for name, change in attempts.items():
        arguments = {"labels": labels, **change}
        try:
            vocab_parallel_smooth_ce(shard, arguments.pop("labels"), **arguments)
        except (TypeError, ValueError) as error:
            errors[name] = (type(error).__name__, str(error))
        else:
            errors[name] = None
    # The group still works afterwards: nobody is stuck in a half-finished collective.
    check = torch.ones(1)
    dist.all_reduce(check)
    errors["group-still-usable"] = int(check.item())
    return errors


def two_dimensional_layout(rank: int) -> tuple[int, int]:
    """(batch part, class part) of a rank on the 2 x 2 mesh of four ranks."""
    return rank // 2, rank % 2


TWO_D_CLASS_SIZES = (6, 7)


def _two_dimensional(rank: int) -> dict:
    """Classes split over ranks {0, 1} and {2, 3}, the batch over {0, 2} and {1, 3}."""
    # Every rank creates every group, in the same order, as torch.distributed requires.
    class_groups = [dist.new_group([0, 1]), dist.new_group([2, 3])]
    batch_groups = [dist.new_group([0, 2]), dist.new_group([1, 3])]
    batch_part, class_part = two_dimensional_layout(rank)
    case, slices = data_inputs("dp-weight-mean", 2, seed=7)
    start = sum(TWO_D_CLASS_SIZES[:class_part])
    classes = slice(start, start + TWO_D_CLASS_SIZES[class_part])
    out = {}
    for dtype_name, dtype in DTYPES.items():
        out[("2d-weight-mean", dtype_name)] = _run(
            vocab_parallel_smooth_ce,
            torch.from_numpy(case["logits"][slices[batch_part], classes]).to(dtype),
            torch.from_numpy(case["labels"][slices[batch_part]]),
            _torch_options(case["options"], dtype),
            case["cotangent"],
            group=class_groups[batch_part],
            batch_group=batch_groups[class_part],
            ignore_index=IGNORE,
        )
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
    # The results are saved. Leave without the interpreter's finalization, where a gloo
    # worker thread still releasing a collective launched in backward can abort the
    # exit (pytorch/pytorch#190489; see docs/examples/data_parallel.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
