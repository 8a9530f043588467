"""The report's plots: matplotlib figures rendered to inline SVG (text kept as text)."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from memory.models import Promotion

COLORS = {"incumbent": "#4b6a88", "candidate": "#e07a1f", "promote": "#2e8b57", "reject": "#9a9a9a",
          "rollback": "#c0392b"}
PHASE_ORDER = ["acquire", "refine", "update", "evaluate"]


def _figure(width: float = 8.0, height: float = 3.4):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 10, "axes.spines.top": False,
                         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
                         "font.family": "sans-serif"})
    fig, ax = plt.subplots(figsize=(width, height))
    return fig, ax


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inline


def plot_accuracy(points: list[dict[str, Any]]) -> str:
    """The learning curve across runs: incumbent and candidate per decided cycle, in order."""
    fig, ax = _figure()
    decided = [d for d in points if "incumbent_acc" in d or "candidate_acc" in d]
    for role, offset, marker in (("incumbent", -0.08, "o"), ("candidate", 0.08, "s")):
        pts = [d for d in decided if role + "_acc" in d]
        if not pts:
            continue
        xs = [d["x"] + offset for d in pts]
        ys = [d[role + "_acc"][0] for d in pts]
        err = [[max(0.0, y - d[role + "_acc"][1]) for y, d in zip(ys, pts)],
               [max(0.0, d[role + "_acc"][2] - y) for y, d in zip(ys, pts)]]
        ax.errorbar(xs, ys, yerr=err, fmt=marker, color=COLORS[role], capsize=4, label=f"{role} (95% Wilson CI)",
                    ls="-" if role == "incumbent" else "none", lw=1.6, elinewidth=1.2)
    for d in decided:
        if d["decision"] == "promote":
            ax.axvline(d["x"], color=COLORS["promote"], lw=1, ls="--", alpha=0.7)
    # A new run starts: a light separator, so two runs never read as one.
    for prev, d in zip(decided, decided[1:]):
        if d["run"] != prev["run"]:
            ax.axvline(d["x"] - 0.5, color="#333", lw=0.8, alpha=0.4)
    ax.set_xlabel("decided cycle (run · cycle)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_xticks([d["x"] for d in decided], [d["label"] for d in decided], rotation=30 if len(decided) > 8 else 0)
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color=COLORS["promote"], ls="--", label="candidate promoted"))
    # Above the axes, so it never hides a point.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, frameon=False)
    return _svg(fig)


def plot_decisions(promotions: list[Promotion]) -> str:
    """Each decision's paired difference, in the order decisions happened (across runs)."""
    fig, ax = _figure(8.0, 3.0)
    x = 0
    ticks: list[tuple[int, str]] = []
    runs: dict[str, int] = {}
    for p in promotions:
        if p.decision in ("promote", "reject"):
            run = str((p.evidence or {}).get("run_id") or "(no run id)")
            runs.setdefault(run, len(runs) + 1)
            ax.errorbar([x], [p.delta], yerr=[[max(0.0, p.delta - p.ci_low)], [max(0.0, p.ci_high - p.delta)]],
                        fmt="o", color=COLORS[p.decision], capsize=4)
            ticks.append((x, f"run {runs[run]}·c{p.cycle if p.cycle is not None else '?'}"))
            x += 1
        elif p.decision == "rollback":
            ax.axvline(x - 0.5, color=COLORS["rollback"], lw=1.5)
            ax.annotate(f"rollback to {p.incumbent_after}", (x - 0.5, 0), rotation=90, fontsize=8,
                        color=COLORS["rollback"], xytext=(3, 3), textcoords="offset points")
    if ticks:
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], rotation=30 if len(ticks) > 8 else 0)
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xlabel("decided cycle (run · cycle)")
    ax.set_ylabel("candidate − incumbent")
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=COLORS[k], label=k) for k in ("promote", "reject")]
              + [Line2D([], [], color=COLORS["rollback"], label="rollback")], frameon=False, loc="lower left",
              bbox_to_anchor=(0, 1.0), ncols=3)
    return _svg(fig)


def _ordered(keys) -> list[str]:
    return sorted(keys, key=lambda k: (PHASE_ORDER.index(k) if k in PHASE_ORDER else 99, k))


def plot_costs(numbers: list[str], seconds: dict[str, list[float]], tokens: dict[str, list[int]]) -> str:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    palette = ["#4b6a88", "#e07a1f", "#6a9f58", "#b55d8f", "#999999", "#c9a227"]
    for ax, table, label in ((a1, seconds, "seconds per phase"), (a2, tokens, "model tokens per cycle")):
        bottom = [0.0] * len(numbers)
        for i, key in enumerate(_ordered(table)):
            vals = table[key]
            ax.bar([str(n) for n in numbers], vals, bottom=bottom, label=key, color=palette[i % len(palette)])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xlabel("cycle")
        ax.set_ylabel(label)
        if table:
            ax.legend(frameon=False, fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=4)
        ax.margins(x=0.15)
    return _svg(fig)


def plot_growth(series: dict[str, tuple[list[datetime], list[int]]]) -> str:
    import matplotlib.dates as mdates

    fig, ax = _figure(8.0, 3.0)
    palette = {"episodes": "#4b6a88", "exemplars": "#e07a1f", "insights": "#6a9f58", "skills": "#b55d8f"}
    for name, (times, counts) in sorted(series.items()):
        ax.step(times, counts, where="post", label=name, color=palette.get(name, "#777"))
    ax.set_ylabel("rows")
    ax.set_ylim(bottom=0)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(frameon=False, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=4)
    return _svg(fig)
