"""The ARC benchmark's numbers, report and pictures (evals/arc.py).

Scores per condition are means over (task, self-edit) pairs, SEAL's unit; intervals are 95%
bootstrap intervals over tasks (a task's self-edits are not independent draws), and comparisons
between conditions are paired by task.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.core.io import write_atomic
from policies.arc.grids import ArcTask, Grid

METRICS = ("solved", "partial", "gold_logprob")
# SEAL's Table 1 (Llama-3.2-1B, share of evaluation (task, self-edit) pairs solved)
SEAL_REPORTED = {"icl": 0.0, "ttt-oracle": 1.0, "ttt-self-edit": 0.2, "seal": 0.725}
# The ARC colour palette (0 black, 1 blue, 2 red, 3 green, 4 yellow, 5 grey, 6 magenta, 7 orange,
# 8 light blue, 9 maroon)
PALETTE = [
    "#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00",
    "#AAAAAA", "#F012BE", "#FF851B", "#7FDBFF", "#870C25",
]  # fmt: skip


def _task_means(results: Sequence[dict], task_ids: Sequence[str], cond: str) -> np.ndarray:
    """(T, M): per task, the mean of each metric over its pairs (NaN rows for missing tasks)."""
    rows = []
    for task in task_ids:
        mine = [r["result"] for r in results if r["condition"] == cond and r["task"] == task]
        rows.append([np.mean([m[k] for m in mine]) if mine else np.nan for k in METRICS])
    return np.array(rows, dtype=float)


def _bootstrap(values: np.ndarray, samples: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of the column means of `values` (T, M), resampling rows."""
    draws = rng.integers(0, len(values), size=(samples, len(values)))
    boots = np.stack([values[d].mean(0) for d in draws])
    return np.percentile(boots, 2.5, axis=0), np.percentile(boots, 97.5, axis=0)


def summarize(
    results: Sequence[dict], task_ids: Sequence[str], conditions: Sequence[str], samples: int
) -> dict:
    """Per condition: pair means with intervals over tasks; per task rows; paired comparisons."""
    rng = np.random.default_rng(0)
    table, means = {}, {}
    for cond in conditions:
        mine = [r for r in results if r["condition"] == cond]
        if not mine:
            continue
        per_task = _task_means(results, task_ids, cond)
        per_task = per_task[~np.isnan(per_task).any(1)]
        means[cond] = _task_means(results, task_ids, cond)
        lo, hi = _bootstrap(per_task, samples, rng)
        pairs = [r["result"] for r in mine]
        table[cond] = {
            **{k: round(float(np.mean([p[k] for p in pairs])), 4) for k in METRICS},
            "ci95": {
                k: [round(float(lo[i]), 4), round(float(hi[i]), 4)] for i, k in enumerate(METRICS)
            },
            "pairs": len(pairs),
            "solved_pairs": int(sum(p["solved"] for p in pairs)),
            "tasks": len(per_task),
            "valid_configs": sum(p["refused"] is None for p in pairs),
            "trained": sum(p["trained"] for p in pairs),
            "mean_steps": round(float(np.mean([p["steps"] for p in pairs])), 1),
            "seconds": round(sum(r["seconds"] for r in mine), 1),
            "refusals": sorted({p["refused"] for p in pairs if p["refused"]})[:10],
        }
    comparisons = {}
    for a, b in (("ttt-oracle", "icl"), ("seal", "ttt-self-edit"), ("seal", "icl")):
        if a in means and b in means:
            diff = means[a] - means[b]
            diff = diff[~np.isnan(diff).any(1)]
            if len(diff):
                lo, hi = _bootstrap(diff, samples, rng)
                comparisons[f"{a} - {b}"] = {
                    k: {
                        "mean": round(float(diff[:, i].mean()), 4),
                        "ci95": [round(float(lo[i]), 4), round(float(hi[i]), 4)],
                    }
                    for i, k in enumerate(METRICS)
                }
    per_task = {
        task: {
            cond: {
                k: round(float(means[cond][i, j]), 4)
                for j, k in enumerate(METRICS)
                if not np.isnan(means[cond][i, j])
            }
            for cond in means
        }
        for i, task in enumerate(task_ids)
    }
    return {"conditions": table, "comparisons": comparisons, "per_task": per_task}


# ----------------------------------------------------------------------------- pictures
def _draw(ax, grid: Grid | None, title: str) -> None:
    from matplotlib.colors import ListedColormap  # deferred: matplotlib is only for pictures

    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    if grid is None:
        ax.text(0.5, 0.5, "no grid", ha="center", va="center", transform=ax.transAxes)
        return
    a = np.asarray(grid)
    ax.imshow(a, cmap=ListedColormap(PALETTE), vmin=0, vmax=9, interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, a.shape[1], 1), minor=True)
    ax.set_yticks(np.arange(-0.5, a.shape[0], 1), minor=True)
    ax.grid(which="minor", color="#555555", linewidth=0.5)
    ax.tick_params(which="minor", length=0)


def draw_case(record: dict, task: ArcTask, path: Path, label: str) -> None:
    """Input, prediction (the first attempt) and truth of a record's first test query."""
    import matplotlib  # deferred: matplotlib is only for pictures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    query = record["result"]["queries"][0]
    attempt = query["attempts"][0] if query["attempts"] else None
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    _draw(axes[0], task.test[0].input, "input")
    _draw(axes[1], None if attempt is None else tuple(map(tuple, attempt)), "prediction")
    _draw(axes[2], task.test[0].output, "truth")
    fig.suptitle(
        f"{label}: task {task.id}, {record['condition']} (self-edit {record['sample']}); "
        f"partial {query['partial']:.2f} (best of 2 attempts; shown: attempt 1)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pictures(results: Sequence[dict], tasks: dict[str, ArcTask], out: Path) -> dict[str, str]:
    """solved.png (a solved pair, else the closest: highest partial credit) and failed.png (an
    unsolved pair of the most trained condition); their names and what they show."""
    order = {c: i for i, c in enumerate(("seal", "ttt-self-edit", "ttt-oracle", "icl"))}
    rank = lambda r: (order.get(r["condition"], 9), r["task"], r["sample"])  # noqa: E731
    ranked = sorted(results, key=rank)
    solved = [r for r in ranked if r["result"]["solved"]]
    failed = [r for r in ranked if not r["result"]["solved"]]
    shown = {}
    if solved:
        draw_case(solved[0], tasks[solved[0]["task"]], out / "solved.png", "solved")
        shown["solved.png"] = f"solved: {solved[0]['task']} ({solved[0]['condition']})"
    elif failed:
        best = max(failed, key=lambda r: r["result"]["partial"])
        draw_case(best, tasks[best["task"]], out / "solved.png", "closest (none solved)")
        shown["solved.png"] = (
            f"no pair was solved; the closest: {best['task']} ({best['condition']}, "
            f"partial {best['result']['partial']:.2f})"
        )
    if failed:
        draw_case(failed[0], tasks[failed[0]["task"]], out / "failed.png", "failed")
        shown["failed.png"] = f"failed: {failed[0]['task']} ({failed[0]['condition']})"
    return shown


# ----------------------------------------------------------------------------- report
def _cell(entry: dict, key: str, pct: bool) -> str:
    lo, hi = entry["ci95"][key]
    if pct:
        return f"{100 * entry[key]:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{entry[key]:.3f} [{lo:.3f}, {hi:.3f}]"


def write_report(summary: dict, config: dict, settings, out: Path) -> str:
    conds = summary["conditions"]
    lines = [
        "# Few-shot learning on ARC (SEAL section 4.1)",
        "",
        f"Model `{summary['model']}`, preset `{summary['size']}`: {summary['tasks']} of SEAL's "
        f"evaluation tasks (fewest cells first: {', '.join(summary['task_ids'])}), "
        f"{summary['self_edits_per_task']} self-edits per task for the self-edit conditions. "
        f"LoRA r={config['adapt']['rank']} alpha={config['adapt']['alpha']} on "
        f"{', '.join(config['adapt']['target_modules'])}, batch {config['adapt']['batch_size']}; "
        f"at most {settings.max_examples} examples and {settings.step_budget} optimizer steps per "
        f"config; {settings.views} voted views, 2 attempts. Intervals: 95% bootstrap over tasks.",
        "",
        "| condition | solved (pairs) | partial credit | gold log-prob / token | valid configs "
        "| trained | SEAL reported (1B) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in conds.items():
        lines.append(
            f"| {name} | {_cell(e, 'solved', True)} ({e['solved_pairs']}/{e['pairs']}) "
            f"| {_cell(e, 'partial', True)} | {_cell(e, 'gold_logprob', False)} "
            f"| {e['valid_configs']}/{e['pairs']} | {e['trained']}/{e['pairs']} "
            f"| {100 * SEAL_REPORTED[name]:.1f}% |"
        )
    lines += ["", "## Per task (mean over its self-edits: solved / partial / gold log-prob)", ""]
    names = list(conds)
    lines.append("| task | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for task, row in summary["per_task"].items():
        cells = [
            f"{row[c]['solved']:.2f} / {row[c]['partial']:.2f} / {row[c]['gold_logprob']:.3f}"
            if c in row and "solved" in row[c]
            else "-"
            for c in names
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets (differences paired by task, 95% intervals)", ""]
    for name, comp in summary["comparisons"].items():
        parts = [
            f"{k} {v['mean']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
            for k, v in comp.items()
        ]
        lines.append(f"- {name}: " + "; ".join(parts))
    checks = []
    targets = (
        ("ttt-oracle - icl", "ttt-oracle above icl on partial credit or log-prob", METRICS[1:]),
        (
            "seal - ttt-self-edit",
            "the trained writer's configs above the untrained writer's",
            METRICS,
        ),
    )
    for name, claim, metrics in targets:
        comp = summary["comparisons"].get(name)
        if comp:
            above = [k for k in metrics if comp[k]["mean"] > 0]
            sure = [k for k in above if comp[k]["ci95"][0] > 0]
            below = [k for k in metrics if comp[k]["mean"] < 0]
            checks.append(
                f"{claim}: {_verdict(above, below)} (above on {', '.join(above) or 'nothing'}; "
                f"interval above 0 on {', '.join(sure) or 'nothing'}; below on "
                f"{', '.join(below) or 'nothing'})"
            )
    lines += ["", *[f"- {c}" for c in checks]]
    lines += ["", "## Refusals (why configs trained nothing)", ""]
    for name, e in conds.items():
        for why in e["refusals"]:
            lines.append(f"- {name}: {why}")
    rest = summary.get("rest_em")
    if rest:
        lines += ["", "## ReST-EM over configs (the writer of `seal`)", ""]
        lines.append(f"Training tasks: {', '.join(rest['tasks'])}.")
        for s in rest["rounds"]:
            lines.append(
                f"- round {s['round']}: {s['candidates']} configs on {s['tasks']} tasks, "
                f"{s['valid']} valid, {s['trained']} trained, {s['kept']} kept; mean reward "
                f"{s['candidate_reward']}, kept {s['kept_reward']}"
            )
        lines.append(f"- seconds (all ReST-EM task runs): {rest['seconds_total']}")
    lines += ["", "## Compute", ""]
    for name, e in conds.items():
        lines.append(f"- {name}: {e['seconds']} s, {e['mean_steps']} optimizer steps per pair")
    lines.append(f"- evaluation units in total: {summary['seconds_units']} s")
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        summary.get("command", "python evals/arc.py"),
        "```",
    ]
    lines += ["", "## Pictures", ""]
    for name, what in summary["pictures"].items():
        lines += [f"![{what}]({name})", f"{what}", ""]
    md = "\n".join(lines) + "\n"
    write_atomic(out / "report.md", md)
    return md


def _verdict(above: list[str], below: list[str]) -> str:
    if above and below:
        return "mixed"
    return "met" if above else "NOT met"
