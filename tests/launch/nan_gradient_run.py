"""The training command with a NaN put into one gradient element on rank 1 at chosen steps, the loss finite:
`python -m tests.launch.nan_gradient_run EXPERIMENT [key=value ...]` with `NAN_GRADIENT_STEPS=2,3,...` (global
steps). Run from the repository root; Lightning's launcher starts rank 1 with the same module."""

from __future__ import annotations

import os
import sys

from moda_train.launch import run
from moda_train.train import main

STEPS_ENV = "NAN_GRADIENT_STEPS"


class NaNGradientModule(run.MODULES["mmdit"]):
    def on_fit_start(self) -> None:
        super().on_fit_start()
        steps = {int(step) for step in os.environ[STEPS_ENV].split(",")}
        # The first parameter: its flat gradient partition belongs to rank 0, so rank 0 must learn of rank 1's NaN.
        first = next(p for p in self.model.parameters() if p.requires_grad)

        def poison(grad):
            if self.global_rank != 1 or self.global_step not in steps:
                return grad
            grad = grad.clone()
            grad.view(-1)[0] = float("nan")
            return grad

        first.register_hook(poison)


if __name__ == "__main__":
    run.MODULES["mmdit"] = NaNGradientModule
    sys.exit(main())
