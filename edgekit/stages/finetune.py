"""Int8-aware fine-tuning by distillation: make the *quantized* actor reproduce the float one.

After range conditioning, most of the remaining int8 error comes from rounding
the layers' weights and activations. This stage fine-tunes a copy of the
conditioned actor through the int8 simulation (``int8sim``: per-tensor weights, or
per-channel ones for the layers ``stages/channels.py`` exports as 1x1 convolutions,
per-tensor activation ranges from the calibration set, TANH on its fixed grid,
the straight-through estimator for rounding) so that its quantized outputs
match the float actor's on the calibration observations. No rewards, no
environment: only the teacher's outputs.

The weights it returns lie on their int8 grid (each Linear's largest weight is
exactly ±127 steps; each row's, per channel), so the converter's own rounding keeps them.
It trains on 80 % of the calibration set and keeps the result only if the
simulated error (``FidelityScore``) is lower on the other 20 %, which it did
not train on; the held-out set stays untouched for validation.

It stops early (build time): the simulated error is measured every
``CHECK_EVERY`` steps, and the distillation ends as soon as it is at ``stop_at``
(the conditioning's "targets met, with a margin") or, with a ``patience``, has
not improved for that many checks; then the best checkpoint seen is returned. A
distillation that runs its whole schedule returns its last (annealed) weights.

Each weight stays within one int8 step of where it started, so the fine-tune
chooses, in effect, how each weight rounds (as AdaRound does) and adjusts the
biases, with the straight-through gradient instead of AdaRound's relaxation.
Measured on the int8 simulation (held-out observations): 2,000 steps at a
per-layer rate of 1e-4 x the layer's largest weight, cosine-decayed, take a
256x256 DQN on CartPole from 49 % to 96 % decisive agreement; a free fine-tune
(rate 1e-3, no bound) reached 94 %, and hurt continuous actors once widened.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekit.stages.int8sim import QuantSim, layer_step, supported  # noqa: F401  (supported: re-exported)
from edgekit.stages.score import FidelityScore

BATCH = 256
RECALIBRATE_EVERY = 50
LEARNING_RATE = 1e-4  # per layer, times the layer's largest weight (so in proportion to its int8 step)
MAX_STEPS_MOVED = 1.0  # each weight stays within one int8 step of where it started (AdaRound-like)
CHECK_EVERY = 250  # steps between two measurements of the simulated error (early stopping)
PATIENCE = 3  # checks without a lower error before the distillation gives up


@dataclass(frozen=True)
class FinetuneResult:
    actor: Any  # DeterministicActor, fine-tuned copy (or the input if it did not pay)
    kept: bool
    score_before: float  # simulated error on the validation split, in units of the target (1.0 = at the target)
    score_after: float
    steps: int  # steps run (fewer than asked when it stopped early)
    stopped: str = ""  # why it stopped before the last step ("" when it ran them all)


def finetune(actor: Any, inputs: np.ndarray, targets: np.ndarray, score: FidelityScore, steps: int = 2000,
             lr: float = LEARNING_RATE, seed: int = 0, relative_lr: bool = True,
             max_steps_moved: float | None = MAX_STEPS_MOVED, weights_only: bool = False,
             stop_at: float | None = None, patience: int | None = PATIENCE) -> FinetuneResult:
    """Distil ``actor``'s quantized simulation towards ``targets`` (teacher outputs for ``inputs``).

    ``stop_at``: stop as soon as the fully simulated error (activations too, also after a weights-only
    distillation) is at or below it; ``patience``: stop after that many checks without a lower error (None:
    never, the cosine schedule's last steps often give the most).

    ``relative_lr``: each layer's rate is ``lr`` times its largest weight; ``max_steps_moved``: weights
    are kept within that many int8 steps of their start (None: free), which keeps the float function
    close to the teacher's: a free fine-tune learns compensations for the narrow model's rounding that
    turn into errors once widening removes that rounding (measured on SAC and TD3 Pendulum)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = score.train_rows, score.val_rows
    x = torch.as_tensor(inputs, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    before = score.of(actor, inputs, weights_only=weights_only)
    student = copy.deepcopy(actor).train(False)
    sim = QuantSim(student, weights_only=weights_only)
    with torch.no_grad():
        sim.calibrate(x[train_idx])
    groups = []
    for m in sim.linears:  # relative: each layer's rate in proportion to its largest weight
        rate = lr * float(m.weight.detach().abs().max()) if relative_lr else lr
        groups.append({"params": list(m.parameters()), "lr": rate, "base_lr": rate})
    optimizer = torch.optim.Adam(groups)
    batch = min(BATCH, len(train_idx))
    anchors = [(m.weight, m.weight.detach().clone(), layer_step(m))  # per tensor, or per row (per-channel)
               for m in sim.linears] if max_steps_moved is not None else []
    tracker = _Tracker(before, student, stop_at, weights_only, patience)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * 0.5 * (1.0 + math.cos(math.pi * step / steps))
        idx = torch.as_tensor(rng.choice(train_idx, size=batch, replace=False))
        loss = ((sim(x[idx]) - y[idx]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # stay within a few int8 steps of the starting weights (AdaRound-like)
            for weight, start, grid in anchors:
                weight.copy_(torch.clamp(weight, start - max_steps_moved * grid, start + max_steps_moved * grid))
        if step % RECALIBRATE_EVERY == RECALIBRATE_EVERY - 1:
            with torch.no_grad():
                sim.calibrate(x[train_idx])
        at_check = (step + 1) % CHECK_EVERY == 0 or step + 1 == steps
        if at_check and tracker.check(score, inputs) and step + 1 < steps:
            break
    if patience is not None or tracker.stopped:  # stopped early: the best checkpoint seen
        after = tracker.best
        student = tracker.best_actor()
    else:  # ran its schedule: the annealed weights (a checkpoint from mid-schedule served widening worse)
        after = score.of(student, inputs, weights_only=weights_only)
    with torch.no_grad():
        QuantSim(student).snap_weights()
    kept = after < before and len(val_idx) > 0
    return FinetuneResult(actor=student if kept else actor, kept=kept, score_before=before, score_after=after,
                          steps=step + 1 if steps else 0, stopped=tracker.stopped)


class _Tracker:
    """The best checkpoint of a distillation by simulated error, and whether to stop."""

    def __init__(self, start: float, student: Any, stop_at: float | None, weights_only: bool,
                 patience: int | None) -> None:
        self.best, self.student, self.stop_at, self.weights_only = start, student, stop_at, weights_only
        self.patience = patience
        self.state: dict[str, Any] | None = None
        self.stale = 0
        self.stopped = ""

    def check(self, score: FidelityScore, inputs: np.ndarray) -> bool:
        """Measure the student now; True when the distillation should stop."""
        current = score.of(self.student, inputs, weights_only=self.weights_only)
        if current < self.best:
            self.best, self.stale = current, 0
            self.state = copy.deepcopy(self.student.state_dict())
        else:
            self.stale += 1
        if self.stop_at is not None and self.stale == 0:  # just improved: are the targets met now?
            full = current if not self.weights_only else score.of(self.student, inputs)
            if full <= self.stop_at:
                self.stopped = f"simulated error {full:.3g} of the target: met"
                return True
        if self.patience is not None and self.stale >= self.patience:
            self.stopped = f"no lower error in {self.patience * CHECK_EVERY} steps"
            return True
        return False

    def best_actor(self) -> Any:
        """The student at its best check (the last state if none improved on the start)."""
        if self.state is not None:
            self.student.load_state_dict(self.state)
        return self.student
