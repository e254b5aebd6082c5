"""One number for "how far is this int8 actor from the float one", used to decide every fidelity rewrite.

The fidelity stages try a rewrite (split input, distillation, widening) and
keep it only if it lowers this score on calibration rows they did not train on.
The score is in units of the targets (1.0 = exactly at the target), matched to
what the report measures:

* continuous actions: max(mean error / 0.5 %, p99 error / 2 %) of the action range;
* discrete actions: disagreement with the float argmax on decisive states / 0.5 %
  (decisive as in ``edgekit.core.metrics``: the policy's own best two outputs
  differ by at least 1 % of their robust spread), plus a tenth of the overall
  disagreement so that ties between candidates go to the one that flips fewer
  indifferent states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.core.metrics import decisive_mask

MEAN_TARGET = 0.005  # share of the action range
P99_TARGET = 0.02
DISAGREEMENT_TARGET = 0.005  # on decisive states
BLOCKS = 16  # the calibration rows, in rollout order, cut into this many blocks ...
VAL_EVERY = 4  # ... and every 4th block (a quarter of the rows) scores what was fitted on the others


@dataclass(frozen=True)
class FidelityScore:
    """Scores an actor's simulated int8 outputs on the validation rows of the calibration set."""

    targets: np.ndarray  # the float (conditioned) actor's outputs on every calibration row
    discrete: bool
    span: float  # output units per action range (2.0 for outputs normalized to [-1, 1])
    train_rows: np.ndarray
    val_rows: np.ndarray
    decisive: np.ndarray | None = None  # discrete: per calibration row, whether the state is decisive

    @classmethod
    def build(cls, targets: np.ndarray, discrete: bool, span: float,
              policy_outputs: np.ndarray | None = None) -> FidelityScore:
        """``policy_outputs``: the unconditioned policy's raw outputs (Q-values, logits) for the decisive test.

        The validation rows are whole blocks of consecutive rows (rollouts are in time order), not rows
        drawn at random: a random row's neighbours in time, nearly the same state, would be training rows,
        and the validation would not see what the distillation over-fits (measured on an RL Zoo A2C Hopper:
        0.81 of the targets on its calibration rows, 2.7 on held-out episodes)."""
        rows = np.arange(len(targets))
        blocks = np.array_split(rows, min(BLOCKS, len(rows)))
        val = np.concatenate([b for i, b in enumerate(blocks) if i % VAL_EVERY == 1] or [rows[:0]])
        decisive = None
        if discrete:
            decisive = decisive_mask(policy_outputs if policy_outputs is not None else targets)
        return cls(targets=np.asarray(targets, dtype=np.float64), discrete=discrete, span=float(span),
                   train_rows=np.setdiff1d(rows, val), val_rows=val, decisive=decisive)

    def of(self, actor: Any, inputs: np.ndarray, all_rows: bool = False, weights_only: bool = False,
           parts: frozenset[str] | None = None) -> float:
        """Score of ``actor`` (simulated int8, calibrated on all of ``inputs``) on the validation rows, or on
        every calibration row (for rewrites that fit nothing to them, e.g. widening); ``weights_only``:
        with int8 weights but float activations (the error widening cannot remove); ``parts``: what is
        rounded (``int8sim.ALL_PARTS`` by default)."""
        from edgekit.stages.int8sim import ALL_PARTS, simulate

        rows = np.arange(len(self.targets)) if all_rows else self.val_rows
        outputs = simulate(actor, inputs, inputs[rows], weights_only=weights_only, parts=parts or ALL_PARTS)
        return self.of_outputs(outputs, rows)

    def of_outputs(self, outputs: np.ndarray, rows: np.ndarray | None = None) -> float:
        """Score of int8 outputs for ``rows`` (default: the validation rows)."""
        rows = self.val_rows if rows is None else rows
        target = self.targets[rows]
        if self.discrete:
            agree = np.argmax(outputs, axis=1) == np.argmax(target, axis=1)
            decisive = self.decisive[rows] if self.decisive is not None else np.ones(len(agree), bool)
            miss = 1.0 - float(agree[decisive].mean()) if decisive.any() else 0.0
            return (miss + 0.1 * (1.0 - float(agree.mean()))) / DISAGREEMENT_TARGET
        share = np.abs(outputs - target) / self.span
        return max(float(share.mean()) / MEAN_TARGET, float(np.percentile(share, 99)) / P99_TARGET)
