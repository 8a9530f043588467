"""`evolve report`: one self-contained HTML page about how the agent has been learning.

Everything comes from the database (the source of truth); nothing is fetched when the page is
opened: plots are inline SVG with their text kept as text, styles are inline. Every string that
came from a model, a user or a web page is HTML-escaped, since experiences can hold any text.
"""

from __future__ import annotations

import html
import io
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.loop.stats import wilson_interval
from memory.models import Cycle, EvalRun, Experience, Policy, Promotion

COLORS = {"incumbent": "#4b6a88", "candidate": "#e07a1f", "promote": "#2e8b57", "reject": "#9a9a9a",
          "rollback": "#c0392b"}
PHASE_ORDER = ["acquire", "refine", "update", "evaluate"]


@dataclass
class Data:
    evals: list[EvalRun]
    promotions: list[Promotion]
    cycles: list[Cycle]
    episodes: list[tuple[int | None, str, int, int, float, datetime, str]]
    experiences: list[Experience]
    policies: dict[str, Policy]
    incumbent: str | None


def load(store) -> Data:
    return Data(
        evals=store.eval_runs(),
        promotions=store.promotions(),
        cycles=store.cycles(),
        episodes=store.episode_costs(),
        experiences=store.experiences(active=None),
        policies={p.id: p for p in store.policies()},
        incumbent=store.get_pointer("incumbent"),
    )


# ---------------------------------------------------------------- plots


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


def _role(run: EvalRun, promotions_by_cycle: dict[int, Promotion]) -> str:
    p = promotions_by_cycle.get(run.cycle) if run.cycle is not None else None
    if p is not None and run.policy_id == p.candidate_id and p.candidate_id != p.incumbent_before:
        return "candidate"
    return "incumbent"


def accuracy_points(data: Data) -> list[dict[str, Any]]:
    by_cycle = {p.cycle: p for p in data.promotions if p.cycle is not None and p.decision != "rollback"}
    points = []
    for run in data.evals:
        if run.accuracy is None or run.n <= 0 or run.cycle is None:
            continue
        lo, hi = wilson_interval(run.accuracy * run.n, run.n)
        points.append({"cycle": run.cycle, "policy": run.policy_id, "split": run.split, "n": run.n,
                       "accuracy": run.accuracy, "lo": lo, "hi": hi, "role": _role(run, by_cycle)})
    return points


def plot_accuracy(points: list[dict[str, Any]], promotions: list[Promotion]) -> str:
    fig, ax = _figure()
    for role, offset in (("incumbent", -0.08), ("candidate", 0.08)):
        pts = [p for p in points if p["role"] == role]
        if not pts:
            continue
        xs = [p["cycle"] + offset for p in pts]
        ys = [p["accuracy"] for p in pts]
        err = [[p["accuracy"] - p["lo"] for p in pts], [p["hi"] - p["accuracy"] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt="o" if role == "incumbent" else "s", color=COLORS[role], capsize=4,
                    label=f"{role} (95% Wilson CI)", ls="-" if role == "incumbent" else "none", lw=1.6,
                    elinewidth=1.2)
    for p in promotions:
        if p.decision == "promote" and p.cycle is not None:
            ax.axvline(p.cycle, color=COLORS["promote"], lw=1, ls="--", alpha=0.7)
    ax.set_xlabel("cycle")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1.02)
    cycles = sorted({p["cycle"] for p in points})
    ax.set_xticks(cycles)
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color=COLORS["promote"], ls="--", label="candidate promoted"))
    # Above the axes, so it never hides a point.
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=3, frameon=False)
    return _svg(fig)


def plot_decisions(promotions: list[Promotion]) -> str:
    fig, ax = _figure(8.0, 3.0)
    decided = [p for p in promotions if p.decision in ("promote", "reject") and p.cycle is not None]
    for p in decided:
        ax.errorbar([p.cycle], [p.delta], yerr=[[p.delta - p.ci_low], [p.ci_high - p.delta]], fmt="o",
                    color=COLORS[p.decision], capsize=4)
    for p in promotions:
        if p.decision == "rollback":
            x = p.cycle if p.cycle is not None else (max((d.cycle for d in decided), default=0) + 0.5)
            ax.axvline(x, color=COLORS["rollback"], lw=1.5)
            ax.annotate(f"rollback to {p.incumbent_after}", (x, 0), rotation=90, fontsize=8,
                        color=COLORS["rollback"], xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="#333", lw=0.8)
    ax.set_xlabel("cycle")
    ax.set_ylabel("candidate − incumbent")
    if decided:
        ax.set_xticks(sorted({p.cycle for p in decided}))
    from matplotlib.lines import Line2D

    ax.legend(handles=[Line2D([], [], marker="o", ls="", color=COLORS[k], label=k) for k in ("promote", "reject")]
              + [Line2D([], [], color=COLORS["rollback"], label="rollback")], frameon=False, loc="lower left",
              bbox_to_anchor=(0, 1.0), ncols=3)
    return _svg(fig)


def phase_table(data: Data) -> tuple[list[int], dict[str, list[float]], dict[str, list[int]]]:
    """Seconds per phase (from Cycle rows) and tokens per episode source, per cycle number."""
    numbers = sorted({c.number for c in data.cycles} | {e[0] for e in data.episodes if e[0] is not None})
    seconds: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(numbers))
    tokens: dict[str, list[int]] = defaultdict(lambda: [0] * len(numbers))
    pos = {n: i for i, n in enumerate(numbers)}
    for c in data.cycles:
        for phase, secs in (c.phase_seconds or {}).items():
            seconds[phase][pos[c.number]] += float(secs)
    for cycle, source, pt, ct, *_ in data.episodes:
        if cycle is not None:
            tokens[source][pos[cycle]] += int(pt) + int(ct)
    return numbers, dict(seconds), dict(tokens)


def _ordered(keys) -> list[str]:
    return sorted(keys, key=lambda k: (PHASE_ORDER.index(k) if k in PHASE_ORDER else 99, k))


def plot_costs(numbers: list[int], seconds: dict[str, list[float]], tokens: dict[str, list[int]]) -> str:
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.2))
    palette = ["#4b6a88", "#e07a1f", "#6a9f58", "#b55d8f", "#999999", "#c9a227"]
    for ax, table, label in ((a1, seconds, "seconds per phase"), (a2, tokens, "model tokens per phase")):
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


def growth_series(data: Data) -> dict[str, tuple[list[datetime], list[int]]]:
    series: dict[str, list[datetime]] = defaultdict(list)
    for *_, created, _verdict in data.episodes:
        series["episodes"].append(created)
    for e in data.experiences:
        series[f"{e.kind}s"].append(e.created_at)
    out = {}
    for name, times in series.items():
        times = sorted(_aware(t) for t in times)
        out[name] = (times, list(range(1, len(times) + 1)))
    return out


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


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


def ranked_experiences(data: Data, k: int = 5, min_uses: int = 2) -> tuple[list[Experience], list[Experience]]:
    """Most and least useful among experiences shown at least `min_uses` times in train episodes,
    ranked by the lower (best) or upper (worst) Wilson bound, so one lucky use does not top the list."""
    used = [e for e in data.experiences if e.uses >= min_uses]
    # With few candidates, the better half is "most" and the rest "least", never both.
    best = sorted(used, key=lambda e: (-wilson_interval(e.successes, e.uses)[0], -e.uses, e.id))[:min(k, (len(used) + 1) // 2)]
    best_ids = {e.id for e in best}
    worst = sorted((e for e in used if e.id not in best_ids),
                   key=lambda e: (wilson_interval(e.successes, e.uses)[1], -e.uses, e.id))[:k]
    return best, worst


# ---------------------------------------------------------------- page

CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f5f6f8;margin:0}
main{max-width:980px;margin:0 auto;padding:28px 24px 60px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:18px;margin:0 0 10px}
.sub{color:#5b6473;margin:0 0 22px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin-bottom:22px}
.card{background:#fff;border-radius:10px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.card b{display:block;font-size:24px} .card b.small{font-size:17px;line-height:1.9;word-break:break-all} .card span{color:#5b6473;font-size:13px}
section{background:#fff;border-radius:10px;padding:18px 20px;margin-bottom:18px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section svg{width:100%;height:auto}
table{border-collapse:collapse;width:100%;font-size:13.5px;margin-top:8px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6e8ec;vertical-align:top}
th{color:#5b6473;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.empty{color:#5b6473;font-style:italic}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}
.promote{background:#2e8b57}.reject{background:#9a9a9a}.rollback{background:#c0392b}
.snip{max-width:560px;white-space:pre-wrap;word-break:break-word}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _empty(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


def render(data: Data, *, generated: datetime | None = None) -> str:
    generated = generated or datetime.now(timezone.utc)
    points = accuracy_points(data)
    inc = data.policies.get(data.incumbent or "")
    decisions = [p for p in data.promotions if p.decision in ("promote", "reject")]
    latest = max((p for p in points if p["role"] == "incumbent"), key=lambda p: p["cycle"], default=None)
    cards = [
        (inc.id if inc else "none", "incumbent policy" + (f" (v{inc.version})" if inc else "")),
        (f"{latest['accuracy']:.1%}" if latest else "n/a",
         f"held-out accuracy, cycle {latest['cycle']}" if latest else "held-out accuracy"),
        (str(len({c.number for c in data.cycles})), "cycles"),
        (f"{sum(p.decision == 'promote' for p in decisions)} / {len(decisions)}", "promoted / decided"),
        (f"{len(data.episodes):,}", "episodes"),
        (f"{sum(e.active for e in data.experiences):,}", "active experiences"),
    ]
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>evolve report</title>"
             f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{CSS}</style></head><body><main>",
             "<h1>evolve report</h1>",
             f'<p class="sub">Generated {_e(generated.strftime("%Y-%m-%d %H:%M UTC"))} from the store. '
             "Accuracy is on held-out tasks the agent never learned from.</p>",
             '<div class="cards">' + "".join(f'<div class="card"><b{" class=small" if len(v) > 9 else ""}>{_e(v)}</b>'
                                             f'<span>{_e(k)}</span></div>'
                                             for v, k in cards) + "</div>"]

    parts.append('<section id="accuracy"><h2>Held-out accuracy per cycle</h2>')
    if points:
        parts.append(plot_accuracy(points, data.promotions))
        rows = "".join(
            f"<tr><td class=num>{p['cycle']}</td><td>{_e(p['role'])}</td><td>{_e(p['policy'])}</td>"
            f"<td>{_e(p['split'])}</td><td class=num>{p['n']}</td><td class=num>{p['accuracy']:.1%}</td>"
            f"<td class=num>{p['lo']:.1%} – {p['hi']:.1%}</td></tr>" for p in points)
        parts.append("<table><tr><th>cycle</th><th>role</th><th>policy</th><th>split</th><th>n</th>"
                     f"<th>accuracy</th><th>95% CI</th></tr>{rows}</table>")
    else:
        parts.append(_empty("No evaluation runs yet: `evolve improve` evaluates every candidate."))
    parts.append("</section>")

    parts.append('<section id="decisions"><h2>Promotions and rollbacks</h2>')
    if data.promotions:
        if decisions or any(p.decision == "rollback" for p in data.promotions):
            parts.append("<p class=sub>Each point is the paired difference in held-out accuracy between the "
                         "candidate and the incumbent on the same tasks; a candidate is promoted only when "
                         "the difference is significant.</p>")
            parts.append(plot_decisions(data.promotions))
        rows = "".join(
            f"<tr><td>{_e(p.created_at.strftime('%Y-%m-%d %H:%M'))}</td><td class=num>{_e(p.cycle if p.cycle is not None else '')}</td>"
            f"<td><span class='tag {_e(p.decision)}'>{_e(p.decision)}</span></td><td>{_e(p.incumbent_before)} → "
            f"{_e(p.incumbent_after)}</td><td class=num>{p.delta:+.3f}</td>"
            f"<td class=num>[{p.ci_low:+.3f}, {p.ci_high:+.3f}]</td><td class=num>{p.p_value:.3g}</td>"
            f"<td class=num>{p.n}</td></tr>" for p in data.promotions)
        parts.append("<table><tr><th>when</th><th>cycle</th><th>decision</th><th>incumbent before → after</th>"
                     f"<th>delta</th><th>95% CI</th><th>p</th><th>n</th></tr>{rows}</table>")
    else:
        parts.append(_empty("No decisions yet."))
    parts.append("</section>")

    numbers, seconds, tokens = phase_table(data)
    parts.append('<section id="costs"><h2>Time and tokens</h2>')
    if numbers and (seconds or tokens):
        parts.append(plot_costs(numbers, seconds, tokens))
        total_s = sum(sum(v) for v in seconds.values())
        total_t = sum(sum(v) for v in tokens.values())
        parts.append(f"<p>{total_s:,.0f} s and {total_t:,} model tokens over {len(numbers)} cycle(s). "
                     "Tokens are counted from the episodes each phase stored.</p>")
    else:
        parts.append(_empty("No cycles recorded yet."))
    parts.append("</section>")

    series = growth_series(data)
    parts.append('<section id="growth"><h2>Store growth</h2>')
    if series:
        parts.append(plot_growth(series))
        verdicts: dict[str, int] = defaultdict(int)
        for *_, v in data.episodes:
            verdicts[v] += 1
        parts.append("<p>Episodes by verdict: " + ", ".join(f"{_e(k)} {n:,}" for k, n in sorted(verdicts.items()))
                     + ". Experiences: " + ", ".join(f"{_e(k)} {len(v[0]):,}" for k, v in sorted(series.items())
                                                      if k != "episodes") + ".</p>")
    else:
        parts.append(_empty("The store is empty."))
    parts.append("</section>")

    best, worst = ranked_experiences(data)
    parts.append('<section id="experiences"><h2>Experiences that helped most and least</h2>')
    if best or worst:
        parts.append("<p>Success rate of the train episodes that showed each experience (at least 2 uses), "
                     "ranked by the bound of its 95% interval so one lucky use does not lead.</p>")
        for title, rows_ in (("Helped most", best), ("Helped least", worst)):
            if not rows_:
                continue
            body = "".join(
                f"<tr><td>{_e(e.kind)}</td><td class=snip>{_e(_clip(e.content))}</td><td class=num>{e.successes}/{e.uses}</td>"
                f"<td class=num>{wilson_interval(e.successes, e.uses)[0]:.0%} – {wilson_interval(e.successes, e.uses)[1]:.0%}</td>"
                f"<td>{'active' if e.active else 'retired'}</td></tr>" for e in rows_)
            parts.append(f"<h3>{title}</h3><table><tr><th>kind</th><th>content</th><th>wins/uses</th>"
                         f"<th>95% CI</th><th>state</th></tr>{body}</table>")
    else:
        parts.append(_empty("No experience has been shown twice yet."))
    parts.append("</section></main></body></html>")
    return "".join(parts)


def _clip(text: str, n: int = 280) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def write_report(store, path: Path) -> Path:
    path = Path(path)
    page = render(load(store))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
