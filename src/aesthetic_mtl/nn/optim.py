"""The optimizer of both training stages: Adam as Keras computes it, or as PyTorch does.

The two share Adam's moments but not where epsilon enters:

- `torch.optim.Adam`:      theta -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
- `keras.optimizers.Adam`: theta -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

In PyTorch's terms Keras' epsilon is eps / sqrt(1 - b2^t): 31.6x larger at step 1, 10x at step 10, still
about 2x after one AADB epoch. Stage-2 gradients are small (|g| around 1e-5 and below), exactly where that
matters: one update differs by 1.3x at |g| = 1e-5 and 3.8x at 1e-6. The paper's wording points to Keras, so
the paper config uses `KerasAdam` (`training.adam: keras`); tests/test_keras_reference.py compares it with
Keras itself.
"""

from __future__ import annotations

from typing import Iterable

import torch

ADAM_VARIANTS = ("keras", "torch")


class KerasAdam(torch.optim.Optimizer):
    """`keras.optimizers.Adam` (Keras 3, amsgrad off), operation for operation as Keras' torch backend runs it
    (keras/src/backend/torch/optimizers/torch_adam.py), so both round alike: the moments are updated as
    m = m * b1 + (1 - b1) * g, the bias correction is folded into a float32 step size
    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t), and epsilon is added to sqrt(v) before dividing.

    Works with torch's lr schedulers (the learning rate is read from the param group at every step).
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7) -> None:
        if lr <= 0 or eps <= 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"KerasAdam needs lr > 0, eps > 0 and betas in [0, 1), got {lr}, {eps}, {betas}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(params, group)
        return loss

    def _update(self, params: list[torch.nn.Parameter], group: dict) -> None:
        beta_1, beta_2 = group["betas"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state["step"] = 0
                state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
        grads = [p.grad for p in params]
        m_list, v_list = [s["m"] for s in states], [s["v"] for s in states]
        dtype, device = params[0].dtype, params[0].device
        lr = torch.tensor(group["lr"], dtype=dtype, device=device)
        local_step = torch.tensor(states[0]["step"], dtype=dtype, device=device)  # Keras: iterations + 1
        beta_1_power = torch.pow(torch.tensor(beta_1, dtype=dtype, device=device), local_step)
        beta_2_power = torch.pow(torch.tensor(beta_2, dtype=dtype, device=device), local_step)
        alpha = lr * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power)

        torch._foreach_mul_(m_list, beta_1)
        torch._foreach_add_(m_list, grads, alpha=1 - beta_1)
        torch._foreach_mul_(v_list, beta_2)
        torch._foreach_add_(v_list, torch._foreach_mul(grads, grads), alpha=1 - beta_2)
        torch._foreach_add_(params, torch._foreach_div(torch._foreach_mul(m_list, alpha),
                                                       torch._foreach_add(torch._foreach_sqrt(v_list), group["eps"])),
                            alpha=-1)


def adam(params: Iterable[torch.nn.Parameter], *, variant: str, lr: float, eps: float) -> torch.optim.Optimizer:
    """Adam of one stage: `variant` "keras" (`KerasAdam`) or "torch" (`torch.optim.Adam`), betas 0.9 / 0.999."""
    if variant == "keras":
        return KerasAdam(params, lr=lr, eps=eps)
    if variant == "torch":
        return torch.optim.Adam(params, lr=lr, eps=eps)
    raise ValueError(f"training.adam must be one of {ADAM_VARIANTS}, got {variant!r}")
