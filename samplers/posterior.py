"""Beta beliefs over the success rate of every prompt of a pool (paper.md section 1)."""

from __future__ import annotations

import torch
from torch import Tensor


class BetaPosterior:
    """Per-prompt Beta(alpha, beta) belief, updated from binary rollout outcomes with optional forgetting.

    Update (Eq. 6), for the prompts rolled out in a step only:
        alpha <- lam * alpha + (1 - lam) * alpha0 + S
        beta  <- lam * beta  + (1 - lam) * beta0  + K - S
    """

    def __init__(
        self,
        pool_size: int,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if pool_size <= 0:
            raise ValueError(f"pool_size must be positive, got {pool_size}")
        if not (prior[0] > 0 and prior[1] > 0):
            raise ValueError(f"prior={prior}: the Beta prior parameters must be positive")
        if not 0.0 <= forgetting <= 1.0:
            raise ValueError(f"forgetting={forgetting}: the forgetting factor lambda must be in [0, 1]")
        self.pool_size = pool_size
        self.prior = (float(prior[0]), float(prior[1]))
        self.forgetting = float(forgetting)
        self.alpha = torch.full((pool_size,), self.prior[0], dtype=dtype, device=device)  # [N]
        self.beta = torch.full((pool_size,), self.prior[1], dtype=dtype, device=device)  # [N]
        self.visits = torch.zeros(pool_size, dtype=torch.int64, device=device)  # [N] steps in which rolled out

    @property
    def device(self) -> torch.device:
        return self.alpha.device

    @property
    def mean(self) -> Tensor:
        """Posterior mean phibar = alpha / (alpha + beta), [N]."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def evidence(self) -> Tensor:
        """Evidence n = alpha + beta, [N]."""
        return self.alpha + self.beta

    def to(self, device: torch.device | str) -> BetaPosterior:
        self.alpha = self.alpha.to(device)
        self.beta = self.beta.to(device)
        self.visits = self.visits.to(device)
        return self

    def update(self, ids: Tensor, successes: Tensor, trials: Tensor) -> None:
        """Fold in S successes out of K trials for each prompt id; repeated ids are summed first."""
        ids, successes, trials = ids.reshape(-1), successes.reshape(-1), trials.reshape(-1)  # [m] each
        if ids.numel() == 0:
            return
        if ids.device.type == "cpu":  # validate where it costs no device synchronisation
            _check_outcomes(ids, successes, trials, self.pool_size)
        ids = ids.to(device=self.device, dtype=torch.int64)
        successes = successes.to(device=self.device, dtype=self.alpha.dtype)
        trials = trials.to(device=self.device, dtype=self.alpha.dtype)
        unique_ids, inverse = torch.unique(ids, return_inverse=True)  # [u], [m]
        # Integer counts summed in float64 are exact, so the result does not depend on summation order.
        s = torch.zeros(unique_ids.numel(), dtype=self.alpha.dtype, device=self.device).index_add_(
            0, inverse, successes
        )
        k = torch.zeros_like(s).index_add_(0, inverse, trials)
        lam = self.forgetting
        a0, b0 = self.prior
        self.alpha[unique_ids] = lam * self.alpha[unique_ids] + (1.0 - lam) * a0 + s
        self.beta[unique_ids] = lam * self.beta[unique_ids] + (1.0 - lam) * b0 + (k - s)
        self.visits[unique_ids] += 1

    def state_dict(self) -> dict:
        return {
            "pool_size": self.pool_size,
            "prior": self.prior,
            "forgetting": self.forgetting,
            "alpha": self.alpha.detach().cpu(),
            "beta": self.beta.detach().cpu(),
            "visits": self.visits.detach().cpu(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore beliefs; a state from a different pool or prior fails with a clear error."""
        try:
            pool_size, prior, forgetting = int(state["pool_size"]), tuple(state["prior"]), float(state["forgetting"])
            alpha, beta, visits = state["alpha"], state["beta"], state["visits"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"Corrupt Beta posterior state (missing or malformed field: {err})") from None
        if pool_size != self.pool_size:
            raise ValueError(
                f"Saved posterior covers a pool of {pool_size} prompts but this run's pool has {self.pool_size}: "
                "the checkpoint belongs to a different dataset or split size."
            )
        if prior != self.prior or forgetting != self.forgetting:
            raise ValueError(
                f"Saved posterior used prior {prior} and forgetting {forgetting}, this run uses {self.prior} and "
                f"{self.forgetting}; resume with the same sampler settings."
            )
        for name, tensor in (("alpha", alpha), ("beta", beta), ("visits", visits)):
            if not isinstance(tensor, Tensor) or tensor.shape != (self.pool_size,):
                raise ValueError(f"Corrupt Beta posterior state: '{name}' is not a tensor of shape ({self.pool_size},)")
        if not bool(((alpha > 0) & (beta > 0)).all()):
            raise ValueError("Corrupt Beta posterior state: alpha and beta must be positive")
        self.alpha = alpha.to(device=self.device, dtype=self.alpha.dtype)
        self.beta = beta.to(device=self.device, dtype=self.beta.dtype)
        self.visits = visits.to(device=self.device, dtype=torch.int64)


def _check_outcomes(ids: Tensor, successes: Tensor, trials: Tensor, pool_size: int) -> None:
    if not (ids.shape == successes.shape == trials.shape):
        raise ValueError(
            f"ids, successes and trials must have the same length, got {ids.shape}, {successes.shape}, {trials.shape}"
        )
    if int(ids.min()) < 0 or int(ids.max()) >= pool_size:
        raise IndexError(f"prompt ids must lie in [0, {pool_size}), got range [{int(ids.min())}, {int(ids.max())}]")
    if bool(((successes < 0) | (successes > trials)).any()):
        raise ValueError("successes must lie in [0, trials]")
