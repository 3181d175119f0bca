"""Continual-learning metrics, a markdown report and plots from a run's accuracy matrices.

Pure: no model, no torch; matplotlib is imported only inside the plot functions.

For one sequence of T passages the runner measures a (T+1) x T accuracy matrix R:
row 0 is the untouched base model, row i (1..T) is after learning passages 1..i, and R[i][j] is
the accuracy on passage j (0-based), a fraction in [0, 1] or NaN where it was not measured.
With passages 0-based and rows as above:

- ACC = mean_j R[T][j]                                   (Lopez-Paz & Ranzato 2017, GEM)
- BWT = mean_{j<T-1} (R[T][j] - R[j+1][j])               (Lopez-Paz & Ranzato 2017)
- FWT = mean_{j>=1} (R[j][j] - R[0][j])                  (Lopez-Paz & Ranzato 2017; the base row
  plays their b_j, accuracy at random initialization)
- forgetting = mean_{j<T-1} (max_{l=j+1..T-1} R[l][j] - R[T][j])   (Chaudhry et al. 2018, RWalk)
- just_learned = mean_j R[j+1][j]
- first_passage_retention = [R[i][0] for i = 1..T], and its ratio R[T][0] / R[1][0]

NaN cells are skipped: a term that touches one is left out of its mean, and a metric with no
terms left is None. Over several sequences every metric is averaged per sequence (so the mean
retention ratio is the mean of ratios, not the ratio of mean accuracies) with a 95% percentile
bootstrap interval over sequences (Efron & Tibshirani 1993).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.io import write_atomic

HEATMAP_COLUMNS = 5
METRICS = ("acc", "bwt", "fwt", "forgetting", "just_learned", "first_passage_retention_ratio")
SUMMARY_KEYS = (
    *METRICS,
    "ci95",
    "R",
    "first_passage_retention",
    "n_sequences",
    "wall_seconds",
    "adapter_bytes",
)


@dataclass
class StrategyRun:
    """What the runner collected for one strategy over all its sequences."""

    name: str
    """Strategy name as shown in the report, e.g. "replay+gate"."""
    matrices: list[list[list[float]]]
    """One (T+1) x T accuracy matrix per sequence, all with the same T."""
    wall_seconds: float
    """Wall-clock time summed over sequences."""
    adapter_bytes: int | None
    """Disk size of the adapters the strategy kept; None when it keeps none (rag)."""
    extra: dict = field(default_factory=dict)
    """Strategy-specific counters copied into the summary, e.g. {"updates_rejected": 3}."""


def _as_matrix(R: Sequence[Sequence[float | None]]) -> np.ndarray:
    """R as a float array of shape (T+1, T); None becomes NaN."""
    try:
        r = np.asarray(R, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"accuracy matrix is not a rectangular table of numbers: {exc}") from None
    if r.ndim != 2 or r.shape[1] < 1 or r.shape[0] != r.shape[1] + 1:
        raise ValueError(f"accuracy matrix must be (T+1) x T with T >= 1, got shape {r.shape}")
    seen = r[~np.isnan(r)]
    if ((seen < 0) | (seen > 1)).any():
        raise ValueError("accuracies must be fractions in [0, 1] (or NaN when not measured)")
    return r


def _nanmean(values: np.ndarray) -> float | None:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else None


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def metrics(R: Sequence[Sequence[float]]) -> dict[str, Any]:
    """ACC, BWT, FWT, forgetting, just-learned accuracy and passage-1 retention of one matrix."""
    r = _as_matrix(R)
    T = r.shape[1]
    final = r[T]
    just = r[np.arange(1, T + 1), np.arange(T)]  # R[j+1][j], (T,)
    before = r[np.arange(1, T), np.arange(1, T)]  # R[j][j] for j >= 1, (T-1,)
    forgetting = []
    for j in range(T - 1):
        after = r[j + 1 : T, j]  # rows j+1..T-1: from just after learning j to before the last
        after = after[~np.isnan(after)]
        if after.size and not math.isnan(final[j]):
            forgetting.append(after.max() - final[j])
    first, last = r[1, 0], r[T, 0]
    ratio = None if math.isnan(first) or math.isnan(last) or first == 0 else float(last / first)
    return {
        "acc": _nanmean(final),
        "bwt": _nanmean(final[:-1] - just[:-1]),
        "fwt": _nanmean(before - r[0, 1:]),
        "forgetting": _nanmean(np.array(forgetting, dtype=float)),
        "just_learned": _nanmean(just),
        "first_passage_retention": [_or_none(v) for v in r[1:, 0]],
        "first_passage_retention_ratio": ratio,
    }


def _bootstrap_ci(values: np.ndarray, seed: int, resamples: int) -> list[float] | None:
    """95% percentile-bootstrap interval of the mean of `values` (one value per sequence)."""
    if values.size == 0:
        return None
    if values.size == 1:
        return [float(values[0])] * 2
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def _mean_matrix(stack: np.ndarray) -> np.ndarray:
    """Elementwise mean over sequences, skipping NaN; a cell never measured stays NaN."""
    seen = ~np.isnan(stack)  # (n_sequences, T+1, T)
    count = seen.sum(axis=0)
    total = np.where(seen, stack, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def summarize(run: StrategyRun, *, seed: int = 0, resamples: int = 2000) -> dict[str, Any]:
    """Metrics of one strategy averaged over its sequences, with 95% bootstrap intervals."""
    if not run.matrices:
        raise ValueError(f"strategy {run.name!r} has no accuracy matrices")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    arrays = [_as_matrix(m) for m in run.matrices]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"strategy {run.name!r}: sequences have different numbers of passages")
    clash = set(run.extra) & set(SUMMARY_KEYS)
    if clash:
        raise ValueError(f"strategy {run.name!r}: extra keys {sorted(clash)} clash with metrics")
    per_sequence = [metrics(a) for a in arrays]
    summary: dict[str, Any] = {"ci95": {}}
    for key in METRICS:
        values = np.array([m[key] for m in per_sequence if m[key] is not None], dtype=float)
        summary[key] = float(values.mean()) if values.size else None
        # Same seed for every metric: an interval does not depend on which metrics precede it.
        summary["ci95"][key] = _bootstrap_ci(values, seed, resamples)
    mean_r = _mean_matrix(np.stack(arrays))
    summary["R"] = [[_or_none(v) for v in row] for row in mean_r]
    summary["first_passage_retention"] = [_or_none(v) for v in mean_r[1:, 0]]
    summary["n_sequences"] = len(run.matrices)
    summary["wall_seconds"] = run.wall_seconds
    summary["adapter_bytes"] = run.adapter_bytes
    return {**summary, **run.extra}


def _json_safe(value: Any) -> Any:
    """`value` with NaN/inf floats as None and numpy scalars as Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def results_json(runs: list[StrategyRun], config: dict) -> dict[str, Any]:
    """{"strategies": {name: summary}, "config": config}, safe for json.dumps(allow_nan=False)."""
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    strategies = {run.name: summarize(run) for run in runs}
    return _json_safe({"strategies": strategies, "config": config})


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _with_ci(summary: dict[str, Any], key: str) -> str:
    ci = summary["ci95"][key]
    if summary[key] is None or ci is None:
        return _points(summary[key])
    return f"{_points(summary[key])} [{_points(ci[0])}, {_points(ci[1])}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _summary_row(name: str, s: dict[str, Any]) -> str:
    ratio = s["first_passage_retention_ratio"]
    adapter = s["adapter_bytes"]
    cells = [
        _cell(name),
        _with_ci(s, "acc"),
        _with_ci(s, "bwt"),
        _points(s["fwt"]),
        _points(s["forgetting"]),
        _points(s["just_learned"]),
        "n/a" if ratio is None else f"{100 * ratio:.1f}%",
        f"{s['wall_seconds']:.1f}",
        "n/a" if adapter is None else f"{adapter / 1e6:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def _matrix_table(R: list[list[float | None]]) -> list[str]:
    T = len(R[0])
    lines = [
        "| after \\ on | " + " | ".join(f"p{j + 1}" for j in range(T)) + " |",
        "|---|" + "---:|" * T,
    ]
    for i, row in enumerate(R):
        label = "base" if i == 0 else f"after {i}"
        lines.append(f"| {label} | " + " | ".join(_points(v) for v in row) + " |")
    return lines


def markdown_report(results: dict[str, Any]) -> str:
    """The summary table, then each strategy's mean accuracy matrix, all in points (x100)."""
    strategies: dict[str, dict[str, Any]] = results["strategies"]
    shapes = sorted({(s["n_sequences"], len(s["R"][0])) for s in strategies.values()})
    scope = "; ".join(f"{n} sequence{'s' * (n != 1)} of T={T} passages" for n, T in shapes)
    lines = [
        "# Continual learning",
        "",
        f"Means over {scope}. Accuracies in points (x100); ACC and BWT with a 95% bootstrap "
        "interval over sequences. Passage-1 kept = final / just-learned accuracy on passage 1.",
        "",
        "| strategy | ACC | BWT | FWT | forgetting | just learned | passage-1 kept | wall s "
        "| adapter MB |",
        "|---|" + "---:|" * 8,
        *(_summary_row(name, s) for name, s in strategies.items()),
    ]
    for name, s in strategies.items():
        lines += ["", f"## {name}", "", *_matrix_table(s["R"])]
        extra = {k: v for k, v in s.items() if k not in SUMMARY_KEYS}
        if extra:
            lines += ["", ", ".join(f"{k}: {v}" for k, v in extra.items())]
    return "\n".join(lines) + "\n"


def _save_png(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_atomic(path, buf.getvalue())
    return path


def _as_array(rows: list[list[float | None]] | list[float | None]) -> np.ndarray:
    return np.array(rows, dtype=float)  # None -> NaN: drawn as a gap / blank cell


def plot_heatmaps(results: dict[str, Any], path: Path) -> Path:
    """PNG of the mean R matrices side by side (rows of HEATMAP_COLUMNS), one 0..1 color scale."""
    # A bare Figure renders PNG through Agg without pyplot: no display, no global backend switch.
    from matplotlib.figure import Figure

    strategies: dict[str, dict[str, Any]] = results["strategies"]
    if not strategies:
        raise ValueError("no strategies to plot")
    T = max(len(s["R"][0]) for s in strategies.values())
    cols = min(len(strategies), HEATMAP_COLUMNS)
    rows = math.ceil(len(strategies) / cols)
    fig = Figure(
        figsize=(cols * (1.2 + 0.6 * T), rows * (1.5 + 0.5 * (T + 1))), layout="constrained"
    )
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(strategies) :]:
        ax.set_axis_off()
    for ax, (name, s) in zip(axes, strategies.items(), strict=False):
        r = _as_array(s["R"])
        image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(name)
        ax.set_xticks(range(r.shape[1]), [f"p{j + 1}" for j in range(r.shape[1])])
        ax.set_yticks(range(r.shape[0]), ["base"] + [f"after {i}" for i in range(1, r.shape[0])])
        for (i, j), v in np.ndenumerate(r):
            if not math.isnan(v):
                color = "white" if v < 0.5 else "black"  # readable on viridis' dark/light ends
                ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=axes, label="accuracy")
    return _save_png(fig, path)


def plot_retention(results: dict[str, Any], path: Path) -> Path:
    """PNG of passage-1 accuracy after each update, one line per strategy."""
    # A bare Figure renders PNG through Agg without pyplot: no display, no global backend switch.
    from matplotlib.figure import Figure

    strategies: dict[str, dict[str, Any]] = results["strategies"]
    if not strategies:
        raise ValueError("no strategies to plot")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, s in strategies.items():
        curve = _as_array(s["first_passage_retention"])
        ax.plot(range(1, curve.size + 1), curve, marker="o", label=name)
    ax.set_xlabel("after update")
    ax.set_ylabel("accuracy on passage 1")
    ax.set_ylim(-0.05, 1.05)  # margin so a curve at 0 or 1 is not hidden by the frame
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend()
    return _save_png(fig, path)


def write_report(results: dict[str, Any], out: Path) -> list[Path]:
    """Write results.json, report.md, heatmaps.png and retention.png into `out`; return them."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "report.md"
    write_atomic(json_path, json.dumps(results, indent=2, allow_nan=False) + "\n")
    write_atomic(md_path, markdown_report(results))
    return [
        json_path,
        md_path,
        plot_heatmaps(results, out / "heatmaps.png"),
        plot_retention(results, out / "retention.png"),
    ]
