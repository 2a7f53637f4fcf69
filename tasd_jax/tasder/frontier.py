"""The EDP / quality frontier of a model: every search mode over a range of budgets.

    rows = tasder.frontier(problem, "ttc_vegeta_m8", budgets=(0.999, 0.99, 0.95))
    tasder.plot_frontier(rows, "frontier.png", title="my model on ttc_vegeta_m8")
"""

from typing import Callable, Sequence

from tasd_jax.tasder.problem import Problem
from tasd_jax.tasder.searches import Result, search


def frontier(problem: Problem, hardware: str, budgets: Sequence[float] = (0.999, 0.99, 0.98, 0.95),
             *, modes: Sequence[str] = ("network", "paper", "ours"), operand: str = "both",
             batch: int = 1, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """One `Result` per (budget, mode), budgets in the order given.

    Args:
      problem: the prepared `Problem`.
      hardware: the design searched, e.g. "ttc_vegeta_m8".
      budgets: fractions of the baseline metric to keep, one search per mode each.
      modes: the search modes (`searches.MODES`).
      operand, batch: as in `search`.
      on_result: called with each result as soon as its search ends (e.g. to show progress).

    Returns:
      len(budgets) x len(modes) results, budget-major: [(b0, m0), (b0, m1), ...].

    Example:
      >>> rows = frontier(problem, "ttc_vegeta_m8", budgets=(0.99, 0.95), modes=("paper", "ours"))
      >>> [(r.budget, r.mode, r.metric, r.relative_edp) for r in rows]
    """
    results = []
    for b in budgets:
        for m in modes:
            results.append(search(problem, hardware=hardware, budget=b, mode=m, operand=operand,
                                  batch=batch))
            if on_result is not None:
                on_result(results[-1])
    return results


def plot_frontier(results: Sequence[Result], path: str, *, title: str = "",
                  marks: Sequence[tuple[str, float, float]] = ()) -> None:
    """Draws relative EDP against the metric, one line per mode, each point labelled
    with its budget, each budget's floor as a dotted vertical line, and `marks`
    ((label, metric, relative EDP), e.g. the dense model) as black points.

    Modes whose points coincide are drawn with different markers and sizes so
    that every mode stays visible. Writes a PNG to `path`.

    Args:
      results: `Result`s, e.g. `frontier`'s; each mode is one line.
      path: the PNG file written.
      title: the plot's title.
      marks: (label, metric, relative EDP) points drawn in black.

    Example:
      >>> rows = frontier(problem, "ttc_vegeta_m8")
      >>> plot_frontier(rows, "frontier.png", title="ResNet-20", marks=[("dense", 0.92, 1.0)])
    """
    from matplotlib.figure import Figure  # plotting only where asked for

    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    styles = {"network": ("s", 9), "paper": ("o", 7), "ours": ("^", 5), "exhaustive": ("x", 8)}
    modes = list(dict.fromkeys(r.mode for r in results))
    for mode in modes:
        points = sorted((r.metric, r.relative_edp, r.budget) for r in results if r.mode == mode)
        marker, size = styles.get(mode, ("D", 6))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, markersize=size,
                alpha=0.8, label=f"TASDER {mode}")
        if mode == modes[-1]:
            for metric, edp, budget in points:
                ax.annotate(f"{budget:.1%}", (metric, edp), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    for i, budget in enumerate(sorted({r.budget for r in results})):
        floor = next(r for r in results if r.budget == budget)
        line = floor.baseline - (1.0 - budget) * abs(floor.baseline)
        ax.axvline(line, color="0.6", linestyle=":", linewidth=0.8,
                   label="budget floors (label: budget)" if i == 0 else None)
    for label, metric, edp in marks:
        ax.scatter([metric], [edp], color="k", zorder=3, marker="*", s=60)
        ax.annotate(label, (metric, edp), textcoords="offset points", xytext=(-4, -12),
                    fontsize=7, ha="right")
    ax.set_xlabel("metric (with the chosen series applied)")
    ax.set_ylabel("EDP relative to the dense model on tc")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
