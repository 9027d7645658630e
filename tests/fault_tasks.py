"""Tasks that misbehave on purpose, for the fault tests (the CLI imports them by class path)."""

from tasks import CountdownTask, Score


class NaNRewardAfterFirstStep(CountdownTask):
    """Countdown whose rewards are NaN from the second scoring call on (the first scores step 1's rollouts)."""

    def score_many(self, completions: list[str], examples: list[dict]) -> list[Score]:
        self.calls = getattr(self, "calls", 0) + 1
        scores = super().score_many(completions, examples)
        return scores if self.calls == 1 else [Score(float("nan"), s.correct) for s in scores]


class NoSignal(CountdownTask):
    """Countdown whose every completion scores 0: no group ever has a learning signal."""

    def score_many(self, completions: list[str], examples: list[dict]) -> list[Score]:
        return [Score(0.0, False) for _ in completions]
