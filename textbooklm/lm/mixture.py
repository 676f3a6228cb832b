"""How many train tokens each source of a mixture gets, with a cap on how often a source repeats.

Why a cap: repeating a small source to fill its weight hides the repetition in a share (the demo's
4 textbooks, 854 tokens, filled a 5% share by being packed 39 times). Repeated data is nearly as
good as new for a few passes and then quickly worth less: Muennighoff et al., "Scaling
Data-Constrained Language Models" (arXiv 2305.16264), find up to ~4 epochs almost as useful as
unique tokens; phi-1.5 (arXiv 2309.05463) trained 150B tokens on a ~30B-token dataset, about 5
passes (its ~20B synthetic tokens at 80% of the mix: about 6). So a source may be packed at most
``max_epochs`` times its train tokens; the pipeline's default, 4, is the data-constrained paper's
"almost free" limit, a little under phi-1.5's passes.

What happens to the tokens a capped source cannot fill: they go to the uncapped sources in
proportion to their weights (water-filling), so the pack keeps the size the training budget asked
for and only the mixture moves. When every source is at its cap, the pack is smaller than asked;
the pack reports both numbers. Redistributing rather than shrinking is deliberate: a pretraining
run trains a fixed number of steps, and a smaller pack would just be cycled through more times by
the trainer, hiding the repetition again one level up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceBudget:
    """One source's train-token target: what its weight asked for and what it gets after the caps."""

    share: float  # normalized weight
    available: int  # train tokens the source holds (one epoch)
    max_epochs: float  # math.inf: no cap
    asked: float  # share x requested total
    target: float  # tokens to draw (<= cap)
    at_cap: bool  # the cap set the target: it was over (capped) or others' freed tokens filled it to the cap

    @property
    def cap(self) -> float:
        """Most train tokens this source may give (0 when it has none, even uncapped)."""
        if self.available <= 0:
            return 0.0
        return self.max_epochs * self.available if math.isfinite(self.max_epochs) else math.inf

    @property
    def capped(self) -> bool:
        """True when its weight asked for more than the cap allows (it gets less than its share)."""
        return self.asked > self.cap * (1 + 1e-9)


def allocate(weights: Sequence[float], available: Sequence[int], max_epochs: Sequence[float],
             total: float) -> list[SourceBudget]:
    """Split ``total`` train tokens by ``weights``, at most ``max_epochs x available`` per source.

    Water-filling: sources whose weighted share exceeds their cap are fixed at the cap and the
    remaining tokens are shared among the others by their weights, repeated until no uncapped
    source goes over. With no source over its cap, the targets are exactly ``share x total``.
    """
    if not (len(weights) == len(available) == len(max_epochs)):
        raise ValueError("allocate: weights, available and max_epochs differ in length")
    total_w = float(sum(weights))
    shares = [w / total_w for w in weights]
    # A source with no train tokens can give none, whatever its cap: its share goes to the others too.
    caps = [0.0 if a <= 0 else (m * a if math.isfinite(m) else math.inf)
            for m, a in zip(max_epochs, available, strict=True)]
    fixed: set[int] = set()
    while True:
        rest = total - sum(caps[i] for i in fixed)
        free_w = sum(weights[i] for i in range(len(weights)) if i not in fixed)
        over = {i for i in range(len(weights))
                if i not in fixed and free_w > 0 and rest * weights[i] / free_w > caps[i] * (1 + 1e-9)}
        if not over:
            break
        fixed |= over
    targets = []
    for i, share in enumerate(shares):
        if i in fixed:
            targets.append(caps[i])
        elif not fixed:
            targets.append(share * total)  # the expression packs used before caps: same packs when none bind
        else:
            targets.append(max(rest, 0.0) * weights[i] / free_w if free_w > 0 else 0.0)
    return [SourceBudget(share=s, available=int(a), max_epochs=float(m), asked=s * total, target=t, at_cap=i in fixed)
            for i, (s, a, m, t) in enumerate(zip(shares, available, max_epochs, targets, strict=True))]
