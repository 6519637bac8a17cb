"""How sure a benchmark number is: 95 % intervals for the targets table.

With 24 samples (6-9 per prompt style) one sample moves a success rate by 0.04-0.17: the interval
says how a verdict against a target would stand on other pictures of the kind. (Whether two runs on
the same samples differ is a paired question: targets.text_changes reads it sample by sample.) A
success rate (a share of yes/no samples) gets the Wilson score interval, which stays inside 0..1 and is sound for small counts and
for shares of 0 or 1; a mean or a median of measured values gets a percentile bootstrap, with a
fixed seed so that the same rows always print the same interval."""
from __future__ import annotations

import math
import random
import statistics
from typing import Callable, Optional, Sequence

Z95 = 1.959963984540054   # the normal quantile of 0.975
RESAMPLES = 2000
SEED = 0


def wilson(successes: int, n: int, z: float = Z95) -> Optional[tuple[float, float]]:
    """The Wilson score interval of a share successes / n; None for n = 0."""
    if n <= 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap(values: Sequence[float], stat: Callable[[Sequence[float]], float] = statistics.fmean,
              resamples: int = RESAMPLES, seed: int = SEED) -> Optional[tuple[float, float]]:
    """The 2.5th and 97.5th percentiles of `stat` over resamples of `values` drawn with replacement;
    None for no values (a single value gives that value as both ends)."""
    values = list(values)
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    return stats[int(0.025 * (resamples - 1))], stats[int(math.ceil(0.975 * (resamples - 1)))]
