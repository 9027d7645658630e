"""InSight: weighted mutual information between one step's K rollouts and a prompt's success rate (paper.md s3).

H(a, b)   = ln B(a, b) - (a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b)          (Beta entropy, nats)
I_K(a, b) = H(a, b) - sum_s BetaBinomial(s; K, a, b) * H(a+s, b+K-s)              (expected information gain)
w(p)      = p (1-p) exp(-eta (p - mu)^2),  p = a / (a+b)                            (difficulty weight)
A         = w(p) * I_K(a, b)
"""

from __future__ import annotations

import functools
import math
from typing import Literal, get_args

import torch
from torch import Tensor

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.randomness import derive_generator, sample_beta
from samplers.registry import register_sampler

Score = Literal["wmi", "mi", "w"]
Belief = Literal["mean", "sample"]
SCORES: tuple[str, ...] = get_args(Score)
BELIEFS: tuple[str, ...] = get_args(Belief)


def beta_entropy(alpha: Tensor, beta: Tensor) -> Tensor:
    """Differential entropy of Beta(alpha, beta) in nats, elementwise."""
    log_b = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
    return (
        log_b
        - (alpha - 1) * torch.digamma(alpha)
        - (beta - 1) * torch.digamma(beta)
        + (alpha + beta - 2) * torch.digamma(alpha + beta)
    )


# Bernoulli numbers B_2n of the asymptotic series ln x - psi(x) = 1/(2x) + sum_n B_2n / (2n x^2n)
_BERNOULLI = ((1, 1 / 6), (2, -1 / 30), (3, 1 / 42), (4, -1 / 30), (5, 5 / 66), (6, -691 / 2730), (7, 7 / 6))
_SERIES_FROM = 10.0  # the series has converged to float64 rounding from here on


def log_minus_digamma_next(x: Tensor) -> Tensor:
    """ln x - psi(x + 1) = (ln x - psi(x)) - 1/x, about -1/(2x) for large x, accurate to float64 rounding for x > 0.

    Below 10 the direct difference is used (both terms are moderate); above, where ln x and psi(x+1) agree in many
    leading digits, the asymptotic series of the difference itself is summed (Horner in 1/x^2).
    """
    inv_sq = 1.0 / (x * x)
    series = torch.zeros_like(x)
    for n, bernoulli in reversed(_BERNOULLI):
        series = (series + bernoulli / (2 * n)) * inv_sq
    large = series - 1 / (2 * x)
    return torch.where(x < _SERIES_FROM, torch.log(x) - torch.digamma(x + 1), large)


def mutual_information(alpha: Tensor, beta: Tensor, k: int) -> Tensor:
    """I_K(alpha, beta): mutual information (nats) between S ~ BetaBinomial(K, alpha, beta) and phi, elementwise.

    float64, as -sum_s w_s (H(a+s, b+K-s) - H(a, b)). Each entropy change is expanded through
    lgamma(x+n) = lgamma(x) + sum_j ln(x+j) and psi(x+n) = psi(x) + sum_j 1/(x+j) and regrouped so that its
    O(K) parts cancel exactly on paper, leaving only terms of the size of the result:
        H(a+s, b+r) - H(a, b) = G(a, s, s-1) + G(b, r, r-1) - G(a+b, K, K-2),   r = K - s,
        G(x, n, m) = sum_{j<n} ln(1 + j/x) + n g(x) - (m sum_{j<n} 1/(x+j) - sum_{j<n} j/(x+j)),
    with g(x) = ln x - psi(x). No special function is evaluated per outcome s, and no two large numbers are
    subtracted, so the relative error stays at float64 rounding also for very large or very lopsided beliefs.
    On the CPU the work runs in cache-sized chunks of candidates.
    """
    if not 1 <= int(k) <= 1024:
        raise ValueError(f"k={k} (rollouts per prompt of the information gain) must be in [1, 1024]")
    a = torch.as_tensor(alpha, dtype=torch.float64)
    b = torch.as_tensor(beta, dtype=torch.float64, device=a.device)
    a, b = torch.broadcast_tensors(a, b)
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    if a.device.type == "cuda" and COMPILE_ON_CUDA:
        return _compiled_kernel()(flat_a, flat_b, int(k)).reshape(a.shape)
    chunk = flat_a.numel() if a.device.type != "cpu" else _CPU_CHUNK
    parts = [
        _mutual_information_1d(flat_a[i : i + chunk], flat_b[i : i + chunk], int(k))
        for i in range(0, max(flat_a.numel(), 1), chunk)
    ]
    return torch.cat(parts).reshape(a.shape)


_CPU_CHUNK = 65536  # candidates per pass: keeps the [chunk, K+1] temporaries in cache
COMPILE_ON_CUDA = True
"""On CUDA, fuse the computation into a few kernels with torch.compile (compiled once per K; eager runs ~100
small kernels, 20x slower on a million candidates). Set to False to stay eager."""


@functools.cache
def _compiled_kernel():
    return torch.compile(_mutual_information_1d, dynamic=True)


def _mutual_information_1d(a: Tensor, b: Tensor, k: int) -> Tensor:
    a, b = a.unsqueeze(-1), b.unsqueeze(-1)  # [N, 1]
    j = torch.arange(k, dtype=torch.float64, device=a.device)  # [K]
    n = torch.arange(k + 1, dtype=torch.float64, device=a.device)  # [K+1] successes s (or failures r)
    zero = torch.zeros_like(a)

    def prefix(terms: Tensor) -> Tensor:  # [N, K] -> [N, K+1]: sums over j < n for n = 0..K
        return torch.cat([zero, terms.cumsum(-1)], -1)

    def growth(x: Tensor) -> tuple[Tensor, Tensor]:
        """G(x, n, n-1) for n = 0..K, [N, K+1], and sum_{j<n} ln(1 + j/x) (reused by the weights)."""
        # With g(x) = g1(x) + 1/x and sum_{j<n} 1/(x+j) = 1/x + sum_{1<=j<n} 1/(x+j), the 1/x parts of
        # n g(x) - (n-1) sum 1/(x+j) combine to exactly 1/x (n >= 1): nothing of size n/x is cancelled.
        log_terms = prefix(torch.log1p(j / x))
        inv_rest = prefix(torch.where(j > 0, 1 / (x + j), 0.0))  # sum_{1<=j<n} 1/(x+j)
        frac = prefix(j / (x + j))
        first = torch.where(n > 0, 1 / x, 0.0)
        return log_terms + n * log_minus_digamma_next(x) - (n - 1) * inv_rest + frac + first, log_terms

    growth_a, log_terms_a = growth(a)  # indexed by s
    growth_b, log_terms_b = growth(b)  # indexed by r; flipped below to index by s
    ab = a + b
    growth_ab = (
        torch.log1p(j / ab).sum(-1, keepdim=True)
        + k * log_minus_digamma_next(ab)
        - (k - 2) * torch.where(j > 0, 1 / (ab + j), 0.0).sum(-1, keepdim=True)
        + (j / (ab + j)).sum(-1, keepdim=True)
        + 2 / ab
    )  # G(a+b, K, K-2), [N, 1]
    entropy_change = growth_a + growth_b.flip(-1) - growth_ab  # H(a+s, b+K-s) - H(a, b), [N, K+1]
    # BetaBinomial(s; K, a, b) is proportional to C(K, s) prod_{j<s} (a+j) prod_{j<K-s} (b+j)
    log_binom = math.lgamma(k + 1.0) - torch.lgamma(n + 1) - torch.lgamma(k - n + 1)  # [K+1]
    logits = log_binom + n * torch.log(a) + log_terms_a + (n * torch.log(b) + log_terms_b).flip(-1)
    weights = torch.softmax(logits, dim=-1)  # [N, K+1]
    return -(weights * entropy_change).sum(-1)


def difficulty_weight(p: Tensor, eta: float = 3.0, mu: float = 0.3) -> Tensor:
    """w(p) = p (1 - p) exp(-eta (p - mu)^2): favours prompts of intermediate, slightly hard success rates."""
    return p * (1 - p) * torch.exp(-eta * (p - mu) ** 2)


def wmi_score(alpha: Tensor, beta: Tensor, k: int, eta: float = 3.0, mu: float = 0.3) -> Tensor:
    """The InSight acquisition score A = w(posterior mean) * I_K(alpha, beta), float64, elementwise."""
    a = torch.as_tensor(alpha, dtype=torch.float64)
    b = torch.as_tensor(beta, dtype=torch.float64, device=a.device)
    return difficulty_weight(a / (a + b), eta, mu) * mutual_information(a, b, k)


@register_sampler("insight")
class InSightSampler(Sampler):
    """InSight: top-M candidates by weighted mutual information over Beta beliefs (ties broken at random).

    Args:
        eta: sharpness of the difficulty weight around mu.
        mu: success rate the difficulty weight favours.
        k: rollouts per prompt in the information gain I_K (null: the training group size).
        candidate_multiplier: candidates scored per selected prompt (Mhat = candidate_multiplier * M).
        prior: Beta prior (alpha0, beta0) of every prompt.
        forgetting: forgetting factor lambda of the posterior update (1.0: pure accumulation, as in the paper).
        score: wmi (the method), mi (information gain only) or w (difficulty weight only): the paper's ablations.
        belief: mean (w at the posterior mean, the method) or sample (w at a Thompson draw; ablation).
    """

    def __init__(
        self,
        eta: float = 3.0,
        mu: float = 0.3,
        k: int | None = None,
        candidate_multiplier: int = 16,
        prior: tuple[float, float] = (1.0, 1.0),
        forgetting: float = 1.0,
        score: Score = "wmi",
        belief: Belief = "mean",
    ) -> None:
        super().__init__(candidate_multiplier=candidate_multiplier, prior=prior, forgetting=forgetting)
        if score not in SCORES:
            raise ValueError(f"score='{score}' is not one of {', '.join(SCORES)} (InSight)")
        if belief not in BELIEFS:
            raise ValueError(f"belief='{belief}' is not one of {', '.join(BELIEFS)} (InSight)")
        self.eta, self.mu, self.k = float(eta), float(mu), k
        self.score_kind, self.belief = score, belief

    def setup(self, pool_size: int, batch_size: int, group_size: int) -> None:
        super().setup(pool_size, batch_size, group_size)
        self.k = self.k or group_size

    def score(self, candidate_ids: Tensor, posterior: BetaPosterior, generator: torch.Generator) -> Tensor:
        alpha, beta = posterior.alpha[candidate_ids], posterior.beta[candidate_ids]  # [C]
        if self.belief == "sample":
            p = sample_beta(alpha, beta, derive_generator(generator, alpha.device))
        else:
            p = alpha / (alpha + beta)
        if self.score_kind == "w":
            return difficulty_weight(p, self.eta, self.mu)
        info = mutual_information(alpha, beta, self.k)
        return info if self.score_kind == "mi" else difficulty_weight(p, self.eta, self.mu) * info
