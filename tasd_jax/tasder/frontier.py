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


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def frontier_labels(results: Sequence[Result]) -> dict[tuple[float, float], str]:
    """The label of each distinct (metric, relative EDP) point of `results`: its
    budget(s), then the modes that land on it when there are several ("99% paper =
    ours"; "all modes" when every mode of `results` does)."""
    at: dict[tuple[float, float], list[Result]] = {}
    for r in results:
        at.setdefault((round(r.metric, 9), round(r.relative_edp, 9)), []).append(r)
    all_modes = set(r.mode for r in results)
    labels = {}
    for point, here in at.items():
        text = "/".join(_percent(b) for b in sorted({r.budget for r in here}, reverse=True))
        modes = list(dict.fromkeys(r.mode for r in here))
        if len(modes) > 1:
            text += " " + ("all modes" if set(modes) == all_modes else " = ".join(modes))
        labels[point] = text
    return labels


def plot_frontier(results: Sequence[Result], path: str, *, title: str = "",
                  marks: Sequence[tuple[str, float, float]] = (),
                  budget: float | None = None) -> None:
    """Draws relative EDP against the metric, one line per mode, and writes a PNG.

    Each budget's floor (the lowest metric it allows) is a dotted vertical line
    labelled with the budget; `budget`, the run's own, is drawn solid and named in
    the legend. Every point is labelled with its budget; where modes land on the
    same point, the label names them ("paper = ours") and their markers are drawn
    nested (hollow, of decreasing size) so that each stays visible. `marks`
    ((label, metric, relative EDP), e.g. the dense model) are black stars.

    Args:
      results: `Result`s, e.g. `frontier`'s; each mode is one line.
      path: the PNG file written.
      title: the plot's title.
      marks: (label, metric, relative EDP) points drawn in black.
      budget: the budget to draw as the run's own (None: none is singled out).

    Example:
      >>> rows = frontier(problem, "ttc_vegeta_m8")
      >>> plot_frontier(rows, "frontier.png", title="ResNet-20", marks=[("dense", 0.92, 1.0)],
      ...               budget=0.99)
    """
    if not results:
        raise ValueError(f"plot_frontier({path!r}): results is empty, there is nothing to draw")
    from matplotlib.figure import Figure  # plotting only where asked for

    fig = Figure(figsize=(9.5, 5), layout="constrained")  # room for the legend outside
    ax = fig.subplots()
    # Largest first, hollow: a smaller marker on the same point sits inside a larger one.
    styles = {"network": ("s", 13), "paper": ("o", 9), "ours": ("^", 5), "exhaustive": ("x", 8)}
    modes = list(dict.fromkeys(r.mode for r in results))
    for mode in modes:
        points = sorted((r.metric, r.relative_edp) for r in results if r.mode == mode)
        marker, size = styles.get(mode, ("D", 6))
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, markersize=size,
                markerfacecolor="none" if size > 6 else None, markeredgewidth=1.6,
                alpha=0.85, label=f"TASDER {mode}")
    ax.margins(x=0.12)
    left, right = ax.get_xlim()
    labels = frontier_labels(results)
    for (metric, edp), text in labels.items():
        # Labels of points near the right edge go to their left, inside the frame.
        near_edge = metric > left + 0.9 * (right - left)
        ax.annotate(text, (metric, edp), textcoords="offset points",
                    xytext=(-9 if near_edge else 7, -3), ha="right" if near_edge else "left",
                    fontsize=7)
    baseline = results[0].baseline
    for b in sorted({r.budget for r in results} | ({budget} if budget is not None else set())):
        floor = baseline - (1.0 - b) * abs(baseline)
        own = b == budget
        ax.axvline(floor, color="tab:red" if own else "0.6", linestyle="-" if own else ":",
                   linewidth=1.2 if own else 0.8,
                   label=f"this run's budget {_percent(b)} (its floor)" if own else None)
        # Above the frame, where no point can hide it.
        ax.text(floor, 1.01, _percent(b), transform=ax.get_xaxis_transform(), ha="center",
                va="bottom", fontsize=7, color="tab:red" if own else "0.4")
    for label, metric, edp in marks:
        ax.scatter([metric], [edp], color="k", zorder=3, marker="*", s=70)
        ax.annotate(label, (metric, edp), textcoords="offset points", xytext=(-6, 5),
                    ha="right", fontsize=7)
    if any(" = " in text or text.endswith("all modes") for text in labels.values()):
        # A legend entry without a line: it explains the "paper = ours" labels.
        ax.plot([], [], " ", label="a = b, all modes: modes at the same point (markers nested)")
    ax.plot([], [], color="0.6", linestyle=":", label="each budget's floor (budget on top)")
    ax.set_xlabel("metric (with the chosen series applied)")
    ax.set_ylabel("EDP relative to the dense model on tc (lower is better)")
    ax.set_title(title, fontsize=9, pad=14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.savefig(path, dpi=120)
