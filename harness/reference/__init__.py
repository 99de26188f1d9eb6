"""Published figures shipped as data, shown beside the harness's own and never used to compute anything.

`reality_check_2020.csv` holds the reality check's CUB200 and Cars196 test figures (percent); see
README.md beside it for the source. The paper's `pretrained` row is the harness's `none`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["published_figures", "PUBLISHED_SOURCE"]

PUBLISHED_SOURCE = "Musgrave, Belongie, Lim, A Metric Learning Reality Check, ECCV 2020 (BN-Inception, 128-d)"
_FILE = Path(__file__).parent / "reality_check_2020.csv"
_LOSS_NAMES = {"pretrained": "none"}


def published_figures(dataset: str) -> pd.DataFrame:
    """One row per loss (the harness's loss names) with `<mode>_<metric>` columns as fractions in [0, 1],
    as the leaderboard holds them; empty when nothing is published for the dataset."""
    table = pd.read_csv(_FILE)
    table = table[table["dataset"] == dataset].drop(columns="dataset")
    table["loss"] = table["loss"].replace(_LOSS_NAMES)
    figures = [c for c in table.columns if c != "loss"]
    table[figures] = table[figures] / 100.0
    return table.reset_index(drop=True)
