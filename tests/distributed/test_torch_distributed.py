"""Vocabulary- and data-parallel smoothed cross-entropy on torch.distributed (gloo, CPU).

One group of 2 and one of 4 processes run every case (tests/distributed/_torch_worker.py)
and save each rank's loss and gradient; the tests here compare them with the plain
float64 reference on the unsharded logits (tests/reference.py), with a gradient from
autograd through a dense torch transcription of the same definition, and with PyTorch's
own ``F.cross_entropy(label_smoothing=...)`` where its conventions apply.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests import reference
from tests.backends import assert_close
from tests.distributed import _torch_worker as worker

REPO = Path(__file__).resolve().parents[2]
WORLD_SIZES = (2, 4)


def _launch(world_size, out_dir):
    """Run the worker on every rank of a fresh gloo group; return each rank's results."""
    init_file = out_dir / "rendezvous"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                *("-m", "tests.distributed._torch_worker"),
                *(str(rank), str(world_size), str(init_file), str(out_dir)),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=240)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    failed = [
        f"rank {rank} exited with {p.returncode}:\n{out}"
        for rank, (p, out) in enumerate(zip(processes, outputs, strict=True))
        if p.returncode != 0
    ]
    assert not failed, "\n".join(failed)
    return [
        torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world_size)
    ]


@pytest.fixture(scope="module")
def group_results(tmp_path_factory):
    """``group_results(P)``: every rank's results from one run of a P-process group."""
    runs = {}

    def results(world_size):
        if world_size not in runs:
            runs[world_size] = _launch(world_size, tmp_path_factory.mktemp(f"world{world_size}"))
        return runs[world_size]

    return results


def _dense_reference(logits, labels, axis, options):
    """Loss of float64 torch ``logits`` from the definition, differentiable by autograd.

    Builds q' densely with tests/reference.py and sums ``w_k q'_k (-log p_k)``, the
    same way reference.smooth_ce does, so that its gradient is independent of lsr.
    """
    z = torch.movedim(logits, axis, -1)
    if options.get("softcap") is not None:
        z = options["softcap"] * torch.tanh(z / options["softcap"])
    num_classes = z.shape[-1]
    labels = np.asarray(labels)
    dense = labels.dtype.kind == "f"
    targets = torch.from_numpy(
        reference.smoothed_targets(
            labels,
            num_classes,
            smoothing=options["smoothing"],
            prior=options["prior"],
            axis=axis,
            dense=dense,
        )
    )
    weight = options.get("weight")
    w = torch.ones(num_classes, dtype=torch.float64) if weight is None else torch.from_numpy(weight)
    loss = -(w * targets * torch.log_softmax(z, dim=-1)).sum(dim=-1)
    if options["kl"]:
        logs = torch.log(torch.where(targets > 0, targets, torch.ones_like(targets)))
        loss = loss + (w * targets * logs).sum(dim=-1)
    if options["z_loss"]:
        loss = loss + options["z_loss"] * torch.logsumexp(z, dim=-1) ** 2
    if options.get("confidence_penalty"):
        log_p = torch.log_softmax(z, dim=-1)
        loss = loss + options["confidence_penalty"] * (log_p.exp() * log_p).sum(dim=-1)
    keep = np.ones(loss.shape, dtype=bool) if dense else labels != worker.IGNORE
    if options.get("where") is not None:
        keep &= options["where"]
    loss = torch.where(torch.from_numpy(keep), loss, torch.zeros_like(loss))
    if options["reduction"] == "none":
        return loss
    if options["reduction"] == "sum":
        return loss.sum()
    if dense or weight is None:
        denominator = keep.sum()
    else:
        denominator = w[torch.from_numpy(np.where(keep, labels, 0))][torch.from_numpy(keep)].sum()
    return loss.sum() / denominator if denominator else loss.sum() * 0.0


def _expected(case, dtype_name="float64"):
    """(loss, gradient) on the unsharded inputs, rounded as the worker's ``dtype_name``."""
    case = dict(case)
    if dtype_name == "bfloat16":
        # lsr computes bfloat16 logits in float32: compare with the rounded logits.
        case["logits"] = torch.from_numpy(case["logits"]).to(torch.bfloat16).double().numpy()
    options = case["options"]
    ignore = None if np.asarray(case["labels"]).dtype.kind == "f" else worker.IGNORE
    expected_loss = reference.smooth_ce(
        case["logits"], case["labels"], axis=case["axis"], ignore_index=ignore, **options
    )
    logits = torch.from_numpy(case["logits"]).requires_grad_(True)
    loss = _dense_reference(logits, case["labels"], case["axis"], options)
    # The torch transcription must itself agree with the reference before it is trusted.
    assert_close(loss.detach().numpy(), expected_loss, "float64")
    loss.backward(torch.as_tensor(case["cotangent"], dtype=torch.float64))
    return expected_loss, logits.grad.numpy()


def _check(result, expected_loss, expected_grad, dtype_name):
    loss, grad = result
    # bfloat16 is computed in float32 (and its loss returned in float32); its gradient is
    # rounded to bfloat16. float32 inputs are the float64 ones rounded once.
    loss_dtype = "float32" if dtype_name == "bfloat16" else dtype_name
    assert loss.dtype == getattr(torch, loss_dtype)
    assert grad.dtype == getattr(torch, dtype_name)
    assert_close(loss.double().numpy(), expected_loss, loss_dtype, scale=2.0)
    assert_close(grad.double().numpy(), expected_grad, dtype_name, scale=2.0)


@pytest.mark.parametrize("dtype_name", list(worker.DTYPES))
@pytest.mark.parametrize("name", list(worker.VOCAB_CASES))
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_vocab_parallel_matches_single_process(group_results, world_size, name, dtype_name):
    results = group_results(world_size)
    case = worker.vocab_inputs(name, seed=list(worker.VOCAB_CASES).index(name))
    expected_loss, expected_grad = _expected(case, dtype_name)
    index = [slice(None)] * expected_grad.ndim
    for rank, result in enumerate(results):
        index[case["axis"]] = worker.class_slice(world_size, rank)
        _check(result[(name, dtype_name)], expected_loss, expected_grad[tuple(index)], dtype_name)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_aux_outputs_match_reference(group_results, world_size, reduction):
    """return_aux of the vocabulary-parallel form and of the data-parallel form: the
    auxiliary outputs over all K classes and the global batch, the correctness by the
    first maximum across ranks."""
    logits, labels = worker.tied_inputs()
    expected = reference.aux_outputs(
        logits, labels, ignore_index=worker.IGNORE, reduction=reduction, softcap=20.0
    )
    per_position = reference.aux_outputs(
        logits, labels, ignore_index=worker.IGNORE, reduction="none"
    )
    # The ties this case was built for: first-of-tie right, later-of-tie wrong.
    assert [per_position["correct"][0, i] for i in range(4)] == [1.0, 0.0, 1.0, 0.0]
    assert per_position["correct"][1, 0] == 0.0
    for rank, result in enumerate(group_results(world_size)):
        for form in ("aux-vocab", "aux-data"):
            aux = result[(form, reduction)]
            for name in ("nll", "lse", "entropy", "correct"):
                want = expected[name]
                if form == "aux-data" and reduction == "none":
                    want = want[worker.aux_rows(world_size, rank)]
                got = getattr(aux, name)
                assert not got.requires_grad
                assert_close(got.numpy(), want, "float64", scale=2.0)


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_all_ignored_mean_is_zero_with_zero_gradient(group_results, world_size):
    results = group_results(world_size)
    for result in results:
        loss, grad = result[("all-ignored-mean", "float32")]
        assert loss.item() == 0.0
        assert torch.count_nonzero(grad).item() == 0


@pytest.mark.parametrize("name", ["uniform-mean", "uniform-sum", "weight-uniform-mean"])
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_vocab_parallel_matches_torch_cross_entropy(group_results, world_size, name):
    """PyTorch's own loss on the whole logits (its label_smoothing is the uniform prior)."""
    results = group_results(world_size)
    case = worker.vocab_inputs(name, seed=list(worker.VOCAB_CASES).index(name))
    options = case["options"]
    logits = torch.from_numpy(case["logits"]).requires_grad_(True)
    weight = options.get("weight")
    builtin = F.cross_entropy(
        logits.reshape(-1, worker.NUM_CLASSES),
        torch.from_numpy(case["labels"]).reshape(-1),
        weight=None if weight is None else torch.from_numpy(weight),
        ignore_index=worker.IGNORE,
        reduction=options["reduction"],
        label_smoothing=options["smoothing"],
    )
    builtin.backward(torch.tensor(case["cotangent"], dtype=torch.float64))
    for rank, result in enumerate(results):
        classes = worker.class_slice(world_size, rank)
        _check(
            result[(name, "float64")],
            builtin.item(),
            logits.grad[..., classes].numpy(),
            "float64",
        )


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_naive_per_shard_smoothing_is_rejected(group_results, world_size):
    """Smoothing over the local K (Megatron-LM #737, #7464) fails the comparison used above."""
    results = group_results(world_size)
    case = worker.vocab_inputs("uniform-mean", seed=0)
    expected_loss, _ = _expected(case)
    naive = [result["naive-local-K"].item() for result in results]
    for loss in naive:
        with pytest.raises(AssertionError):
            assert_close(loss, expected_loss, "float32", scale=2.0)
    # The ranks do not even agree with each other (their slices differ in size).
    assert len({round(loss, 12) for loss in naive}) > 1


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_forward_and_backward_all_reduce_four_values_per_position(group_results, world_size):
    """The communication the README's scaling note counts: 4 N values, none in backward."""
    results = group_results(world_size)
    positions = int(np.prod(worker.vocab_inputs("weight-prior-mean", seed=0)["labels"].shape))
    float32_bytes = 4
    for result in results:
        assert result["all_reduce_calls"] == [
            (positions * float32_bytes, "MAX"),
            (3 * positions * float32_bytes, "SUM"),
        ]


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_bad_input_raises_on_every_rank(group_results, world_size):
    results = group_results(world_size)
    for result in results:
        errors = result["errors"]
        assert errors.pop("group-still-usable") == world_size
        assert all(error is not None for error in errors.values()), errors
        kinds = {name: kind for name, (kind, _) in errors.items()}
        assert kinds["dense-labels"] == "TypeError"
        assert all(kind == "ValueError" for name, kind in kinds.items() if name != "dense-labels")
        # Checked against the global K, not the slice's.
        assert f"[0, {worker.NUM_CLASSES})" in errors["label-equal-to-K"][1]
        assert f"shape ({worker.NUM_CLASSES},)" in errors["prior-of-wrong-length"][1]
        assert f"shape ({worker.NUM_CLASSES},)" in errors["weight-of-wrong-length"][1]
        assert "must sum to 1" in errors["prior-slices-each-summing-to-1"][1]
        assert "Received: smoothing=1.5" in errors["smoothing-above-1"][1]


@pytest.mark.parametrize("dtype_name", list(worker.DTYPES))
@pytest.mark.parametrize("name", list(worker.DATA_CASES))
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_data_parallel_matches_global_batch(group_results, world_size, name, dtype_name):
    results = group_results(world_size)
    case, slices = worker.data_inputs(
        name, world_size, seed=100 + list(worker.DATA_CASES).index(name)
    )
    expected_loss, expected_grad = _expected(case, dtype_name)
    for rank, result in enumerate(results):
        _check(result[(name, dtype_name)], expected_loss, expected_grad[slices[rank]], dtype_name)


def _expected_binary(case, dtype_name):
    """(loss, gradient, d loss / d smoothing) of the whole batch: the value from
    tests/reference.py, the gradients by autograd through PyTorch's own
    ``F.binary_cross_entropy_with_logits`` on targets smoothed by hand."""
    logits = case["logits"]
    if dtype_name == "bfloat16":  # computed in float32 from the rounded logits
        logits = torch.from_numpy(logits).to(torch.bfloat16).double().numpy()
    options = dict(case["options"])
    smoothing = 0.15 if isinstance(options["smoothing"], str) else options["smoothing"]
    keep, labels = case["keep"], np.where(case["keep"], case["labels"], 0)
    expected = reference.smooth_bce(
        logits,
        labels,
        smoothing=smoothing,
        prior=options["prior"],
        weight=options.get("weight"),
        pos_weight=options.get("pos_weight"),
        keep=keep,
        reduction=options["reduction"],
    )
    z = torch.from_numpy(logits).requires_grad_(True)
    eps = torch.tensor(smoothing, dtype=torch.float64, requires_grad=True)
    prior = torch.as_tensor(options["prior"], dtype=torch.float64)
    tensor = {k: torch.from_numpy(options[k]) for k in ("weight", "pos_weight") if k in options}
    smoothed = (1 - eps) * torch.from_numpy(labels).double() + eps * prior
    loss = F.binary_cross_entropy_with_logits(z, smoothed, **tensor, reduction="none")
    loss = torch.where(torch.from_numpy(keep), loss, torch.zeros_like(loss))
    if options["reduction"] != "none":
        loss = loss.sum() / (keep.sum() if options["reduction"] == "mean" else 1)
    assert_close(loss.detach().numpy(), expected, "float64")  # two definitions agree
    loss.backward(torch.as_tensor(case["cotangent"], dtype=torch.float64))
    return expected, z.grad.numpy(), eps.grad.item()


@pytest.mark.parametrize("dtype_name", list(worker.DTYPES))
@pytest.mark.parametrize("name", list(worker.BINARY_CASES))
@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_data_parallel_bce_matches_global_batch(group_results, world_size, name, dtype_name):
    results = group_results(world_size)
    seed = 200 + list(worker.BINARY_CASES).index(name)
    case, slices = worker.binary_inputs(name, world_size, seed=seed)
    expected_loss, expected_grad, expected_smoothing_grad = _expected_binary(case, dtype_name)
    none = case["options"]["reduction"] == "none"
    for rank, result in enumerate(results):
        wanted = expected_loss[slices[rank]] if none else expected_loss
        _check(result[(name, dtype_name)], wanted, expected_grad[slices[rank]], dtype_name)
    if case["options"]["smoothing"] == "tensor":
        # Each rank's smoothing gradient is its part of the global one.
        parts = [result[(name, dtype_name, "smoothing-grad")] for result in results]
        total = sum(float(part) for part in parts)
        assert_close(
            total,
            expected_smoothing_grad,
            "float32" if dtype_name != "float64" else "float64",
            scale=4.0,
        )


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_mean_of_rank_bce_means_is_rejected(world_size):
    """The binary cases are built so that a mean of rank means is not the batch mean."""
    case, slices = worker.binary_inputs("bce-mean-ignore", world_size, seed=200)
    options = {k: v for k, v in case["options"].items() if k != "ignore_index"}
    keep, labels = case["keep"], np.where(case["keep"], case["labels"], 0)
    per_rank = [
        reference.smooth_bce(case["logits"][part], labels[part], keep=keep[part], **options)
        for part in slices
    ]
    expected = reference.smooth_bce(case["logits"], labels, keep=keep, **options)
    with pytest.raises(AssertionError):
        assert_close(np.mean(per_rank), expected, "float32", scale=2.0)


def test_distributed_data_parallel_gets_the_global_batch_gradient(group_results):
    """DDP + data_parallel_smooth_ce * world_size: PyTorch's own loss on the whole batch."""
    world_size = 2
    results = group_results(world_size)
    model, features, labels, _, case = worker.ddp_problem(world_size)
    F.cross_entropy(
        model(features),
        labels,
        weight=torch.from_numpy(case["options"]["weight"]),
        ignore_index=worker.IGNORE,
        label_smoothing=0.1,
    ).backward()
    for result in results:
        for name, parameter in model.named_parameters():
            assert_close(result["ddp"][name].numpy(), parameter.grad.numpy(), "float64")


@pytest.mark.parametrize("world_size", WORLD_SIZES)
def test_mean_of_rank_means_is_rejected(world_size):
    """Averaging per-rank means (what a per-replica "mean" gives) is not the batch mean."""
    case, slices = worker.data_inputs("dp-uniform-mean", world_size, seed=100)
    options = case["options"]
    per_rank = [
        reference.smooth_ce(
            case["logits"][part], case["labels"][part], ignore_index=worker.IGNORE, **options
        )
        for part in slices
    ]
    expected = reference.smooth_ce(
        case["logits"], case["labels"], ignore_index=worker.IGNORE, **options
    )
    with pytest.raises(AssertionError):
        assert_close(np.mean(per_rank), expected, "float32", scale=2.0)


@pytest.mark.parametrize("dtype_name", list(worker.DTYPES))
def test_two_dimensional_mesh(group_results, dtype_name):
    """Classes split over one group, the batch over another: the global-batch weighted mean."""
    results = group_results(4)
    case, slices = worker.data_inputs("dp-weight-mean", 2, seed=7)
    expected_loss, expected_grad = _expected(case, dtype_name)
    for rank, result in enumerate(results):
        batch_part, class_part = worker.two_dimensional_layout(rank)
        start = sum(worker.TWO_D_CLASS_SIZES[:class_part])
        classes = slice(start, start + worker.TWO_D_CLASS_SIZES[class_part])
        _check(
            result[("2d-weight-mean", dtype_name)],
            expected_loss,
            expected_grad[slices[batch_part], classes],
            dtype_name,
        )
