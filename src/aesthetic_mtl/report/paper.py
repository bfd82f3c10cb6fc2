"""The paper's reported numbers and other published results, each with the source it is quoted from.

Only numbers someone can look up go here: a table's `paper` column and the `published` table show
these and nothing else (blank where no source reports a number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAPER_SRCC: dict[tuple[str, str], float] = {
    ("AADB", "score"): 0.7067,   # Soydaner & Wagemans 2023, multi-task model, AADB test set (TestNew)
    ("EVA", "score"): 0.695,     # Soydaner & Wagemans 2023, multi-task model, EVA
}
"""Numbers the paper reports, keyed by (dataset, target). Nothing else goes in a `paper` column."""

PAPER_CITATION = "Soydaner & Wagemans, arXiv 2305.09373 (2023)"


@dataclass(frozen=True)
class Published:
    """One published overall-score SRCC, with the table or abstract it is quoted from."""

    dataset: str
    method: str
    source: str
    srcc: float
    total_params: int | None = None
    trainable_params: int | None = None


PAN_2019_TABLE1 = ("Pan, Wang & Jiang, AAAI 2019, \"Image aesthetic assessment assisted by attributes through "
                   "adversarial learning\", Table 1 (AADB, official split)")
SHU_2021_ABSTRACT = ("Shu, Li, Liu & Xu, IEEE TMM (early access 2021), \"Semi-supervised adversarial learning for "
                     "attribute-aware photo aesthetic assessment\", abstract")

PUBLISHED: list[Published] = [
    Published("AADB", "Kong et al. 2016", PAN_2019_TABLE1, 0.6782),
    Published("AADB", "Hou, Yu & Samaras 2017", PAN_2019_TABLE1, 0.6889),
    Published("AADB", "Malu et al. 2017", PAN_2019_TABLE1, 0.689),
    Published("AADB", "Pan et al. 2019: single-task network", PAN_2019_TABLE1, 0.6833),
    Published("AADB", "Pan et al. 2019: multi-task network", PAN_2019_TABLE1, 0.6927),
    Published("AADB", "Pan et al. 2019: full method", PAN_2019_TABLE1, 0.7041),
    Published("AADB", "Shu et al. 2021", SHU_2021_ABSTRACT, 0.761),
]
"""Published AADB overall-score SRCC, quoted from the table or abstract named in `source`. None of these
sources gives parameter counts, so they stay blank. Add a row only with a number you can cite."""


def is_synthetic(source: str | None) -> bool:
    """Data from the built-in generator: the paper never measured it, so nothing compares it with the paper."""
    return source == "synthetic"


def paper_value(dataset: str, target: str, source: str | None = None) -> float:
    """The paper's number for (dataset, target); NaN for synthetic data."""
    if is_synthetic(source):
        return math.nan
    return PAPER_SRCC.get((dataset, target), math.nan)
