"""lsr's fused loss inside Hugging Face ``transformers.Trainer`` (issue 17, "a real client").

A Trainer subclass computes the loss from the decoder's hidden states with
``lsr.torch.linear_smooth_ce`` instead of the model's logits. It must give the numbers of
the Trainer's own ``label_smoothing_factor`` path (``transformers.trainer_pt_utils.
LabelSmoother``) on the same batches, train the same parameters, and use less memory.
Runs in ``nox -s trainer`` (``backends/trainer.txt``); the other sessions ignore this folder.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_pt_utils import LabelSmoother

import lsr.torch
from tests.test_docs import ROOT, check_docs  # tools/check_docs.py, loaded once
from tests.torch.memory import peak_allocated_bytes

SMOOTHING = 0.1


class LinearSmoothCETrainer(Trainer):
    """The recipe of docs/large_vocabularies.md: the loss without the B x T x V logits.

    The label-smoothing factor is the Trainer's own ``label_smoothing_factor``.
    """

    chunk_size: int | None = None  # rows per block of logits; None: lsr's default

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        causal_lm = self.accelerator.unwrap_model(model)
        # The decoder alone: its final (normalised) hidden states, no lm_head, no logits.
        outputs = causal_lm.model(**inputs)
        head = causal_lm.lm_head
        # causal_shift: the hidden state at t is scored against the label at t + 1; lsr
        # shifts the labels, the hidden states are neither sliced nor copied.
        loss = lsr.torch.linear_smooth_ce(
            outputs.last_hidden_state,
            head.weight,
            labels,
            bias=head.bias,
            smoothing=self.args.label_smoothing_factor,
            ignore_index=-100,
            reduction="sum",
            causal_shift=True,
            chunk_size=self.chunk_size,
        )
        # The Trainer's normalisation: by the kept tokens of all accumulated micro-batches
        # when it counted them (num_items_in_batch), else of this batch.
        if num_items_in_batch is None:
            num_items_in_batch = (labels[..., 1:] != -100).sum()
        loss = loss / num_items_in_batch
        return (loss, outputs) if return_outputs else loss


def _model(vocab_size, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


def _examples(count, length, vocab_size, seed=0):
    """Token sequences whose labels end in -100 padding of varying length."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for index in range(count):
        input_ids = torch.randint(0, vocab_size, (length,), generator=generator)
        labels = input_ids.clone()
        labels[length - index % 4 :] = -100
        labels[0] = -100 if index % 3 == 0 else labels[0]
        examples.append({"input_ids": input_ids, "labels": labels})
    return examples


def _arguments(tmp_path, **overrides):
    options = dict(
        output_dir=str(tmp_path),
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        max_steps=3,
        per_device_train_batch_size=4,
        dataloader_num_workers=0,
        learning_rate=1e-3,
        label_smoothing_factor=SMOOTHING,
        seed=0,
    )
    return TrainingArguments(**(options | overrides))


class _BlockedLinearSmoothCETrainer(LinearSmoothCETrainer):
    chunk_size = 24  # a batch has 64 rows: several blocks, the last one short


def _train(trainer_class, tmp_path, vocab_size, **overrides):
    """Train a fresh model 3 steps; its per-step losses, initial and final parameters."""
    model = _model(vocab_size)
    initial = {name: value.detach().clone() for name, value in model.named_parameters()}
    trainer = trainer_class(
        model=model,
        args=_arguments(tmp_path / trainer_class.__name__, **overrides),
        train_dataset=_examples(24, 16, vocab_size),
    )
    trainer.train()
    # The log keeps each step's loss as the float it was (its printout rounds).
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    final = {name: value.detach().clone() for name, value in model.named_parameters()}
    return losses, initial, final


@pytest.mark.parametrize("accumulation", [1, 2])
def test_training_gives_the_trainers_own_label_smoothed_losses(tmp_path, accumulation):
    # 3 steps of 4 x 16 tokens (of 8 x 16 with accumulation), vocabulary 512.
    # With accumulation the Trainer divides by the kept tokens of both micro-batches
    # (num_items_in_batch), which the recipe must follow.
    overrides = {"gradient_accumulation_steps": accumulation}
    expected, initial, expected_final = _train(Trainer, tmp_path, 512, **overrides)
    losses, initial_again, final = _train(_BlockedLinearSmoothCETrainer, tmp_path, 512, **overrides)
    assert len(expected) == len(losses) == 3
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(expected), rtol=1e-5, atol=1e-5)
    for name, value in initial.items():
        torch.testing.assert_close(initial_again[name], value, rtol=0, atol=0)
        # Every tensor was trained (Adam moves each entry with a gradient by about lr).
        assert (final[name] - value).abs().max() > 1e-4, name
        # The same gradients, so the same parameters after three optimizer steps.
        torch.testing.assert_close(final[name], expected_final[name], rtol=1e-4, atol=1e-5)


def test_one_batch_equals_label_smoother_and_the_shift_matters(tmp_path):
    # LabelSmoother shifts logits and labels itself for causal LMs (shift_labels=True);
    # the recipe shifts only the labels. Unshifted, it is a different number: the
    # comparison above can tell the two apart.
    model = _model(512)
    trainer = LinearSmoothCETrainer(model=model, args=_arguments(tmp_path))
    batch = default_data_collator(_examples(4, 16, 512))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"]).logits
        loss = trainer.compute_loss(model, dict(batch))
    smoother = LabelSmoother(epsilon=SMOOTHING)
    expected = smoother({"logits": logits}, batch["labels"], shift_labels=True)
    unshifted = smoother({"logits": logits}, batch["labels"], shift_labels=False)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    assert abs(float(loss) - float(unshifted)) > 1e-3


def _peak_of_one_step(trainer_class, tmp_path, vocab_size, batch):
    model = _model(vocab_size)
    trainer = trainer_class(model=model, args=_arguments(tmp_path / trainer_class.__name__))
    return peak_allocated_bytes(lambda: trainer.compute_loss(model, dict(batch)).backward())


def test_one_step_peaks_below_one_copy_of_the_logits(tmp_path):
    # 16 x 64 tokens and 32000 classes: the logits (125 MiB in float32) dominate a step
    # of this model (its parameters are 8 MiB). The Trainer's path holds several copies
    # (the logits, their shifted copy, log_softmax, its negation, their gradients); the
    # recipe one block of lsr's default size (512 x 32000, 62.5 MiB) at a time.
    vocab_size, batch = 32000, default_data_collator(_examples(16, 64, 32000))
    logits_bytes = batch["input_ids"].numel() * vocab_size * 4
    peaks = {
        trainer_class: _peak_of_one_step(trainer_class, tmp_path, vocab_size, batch)
        for trainer_class in (Trainer, LinearSmoothCETrainer)
    }
    assert peaks[LinearSmoothCETrainer] < logits_bytes < peaks[Trainer]
    assert peaks[LinearSmoothCETrainer] < peaks[Trainer] / 4


def test_the_documented_recipe_runs_and_prints_what_the_docs_show(tmp_path):
    # The docs session has no transformers, so check_docs skips this block: run it here.
    page = check_docs.parse(ROOT / "docs" / "large_vocabularies.md")
    (index,) = [i for i, b in enumerate(page.blocks) if "class LinearSmoothCETrainer" in b.code]
    recipe, shown = page.blocks[index], page.blocks[index + 1]
    assert recipe.mode == "skip" and shown.language == "text"
    completed = subprocess.run(
        [sys.executable, "-c", recipe.code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    printed = [line for line in completed.stdout.splitlines() if "Trainer:" in line]
    losses = [[float(x) for x in line.split(":")[1].split()] for line in printed]
    documented = [
        [float(x) for x in line.split(":")[1].split()] for line in shown.code.splitlines()
    ]
    assert len(losses) == 2
    # Printed to 4 decimals, which float32 rounding may tip either way.
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=0, atol=2e-4)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(documented), rtol=0, atol=2e-4)
