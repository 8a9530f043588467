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
from agent.surfaces.report_plots import (  # noqa: F401  (re-exported: tests and callers use report.*)
    COLORS,
    plot_accuracy,
    plot_costs,
    plot_decisions,
    plot_growth,
)
from agent.surfaces.report_search import render_search, search_rows
from memory.models import Cycle, EvalRun, Experience, Policy, Promotion



@dataclass
class Data:
    evals: list[EvalRun]
    promotions: list[Promotion]
    cycles: list[Cycle]
    episodes: list[tuple[int | None, str, int, int, float, datetime, str]]
    experiences: list[Experience]
    policies: dict[str, Policy]
    incumbent: str | None
    ratings: list[tuple[str, str, str]] = ()  # (source, verdict, feedback) of chat and worker episodes


def load(store) -> Data:
    return Data(
        evals=store.eval_runs(),
        promotions=store.promotions(),
        cycles=store.cycles(),
        episodes=store.episode_costs(),
        experiences=store.experiences(active=None),
        policies={p.id: p for p in store.policies()},
        incumbent=store.get_pointer("incumbent"),
        ratings=[(e.source, e.verdict, e.feedback) for source in ("chat", "worker")
                 for e in store.episodes(source=source)],
    )


# ---------------------------------------------------------------- plots


def decision_points(data: Data) -> list[dict[str, Any]]:
    """One point per decided cycle, in the order they happened, across every run.

    Roles come from the decision row itself (its candidate and its incumbent), never from
    matching cycle numbers: cycle 1 of two runs are two different cycles."""
    points = []
    runs: dict[str, int] = {}
    for p in data.promotions:
        if p.decision not in ("promote", "reject"):
            continue
        ev = p.evidence or {}
        run = str(ev.get("run_id") or "(no run id)")
        runs.setdefault(run, len(runs) + 1)
        n = p.n or int(ev.get("n") or 0)
        point = {"x": len(points), "run": run, "run_no": runs[run], "cycle": p.cycle, "decision": p.decision,
                 "incumbent": p.incumbent_before, "candidate": p.candidate_id, "n": n}
        for role in ("incumbent", "candidate"):
            acc = ev.get(f"{role}_acc")
            if acc is not None and n > 0:
                lo, hi = wilson_interval(acc * n, n)
                point[role + "_acc"] = (float(acc), lo, hi)
        point["label"] = f"run {runs[run]}·c{p.cycle if p.cycle is not None else '?'}"
        points.append(point)
    return points


def accuracy_points(data: Data) -> list[dict[str, Any]]:
    """Rows of the accuracy table: each decided cycle's incumbent and candidate."""
    rows = []
    for d in decision_points(data):
        for role in ("incumbent", "candidate"):
            if role + "_acc" in d:
                acc, lo, hi = d[role + "_acc"]
                rows.append({"cycle": d["cycle"], "run": d["run"], "label": d["label"], "policy": d[role],
                             "split": "dev", "n": d["n"], "accuracy": acc, "lo": lo, "hi": hi, "role": role,
                             "decision": d["decision"]})
    return rows


def policy_changes(data: Data) -> list[dict[str, Any]]:
    """What each decided candidate changed relative to the incumbent it was tested against."""
    rows = []
    for d in decision_points(data):
        cand, base = data.policies.get(d["candidate"]), data.policies.get(d["incumbent"])
        if cand is None or base is None:
            continue
        rows.append({**d, "changes": spec_diff(base.spec, cand.spec)})
    return rows


def spec_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    changes = []
    old_ins, new_ins = list(before.get("insights") or []), list(after.get("insights") or [])
    changes += [f"+ rule: {r}" for r in new_ins if r not in old_ins]
    changes += [f"− rule: {r}" for r in old_ins if r not in new_ins]
    for key in sorted(set(before) | set(after)):
        if key in ("insights", "memory_snapshot"):
            continue
        if before.get(key) != after.get(key):
            changes.append(f"{key}: {_clip(str(before.get(key)), 60)} → {_clip(str(after.get(key)), 60)}")
    if before.get("memory_snapshot") != after.get("memory_snapshot"):
        changes.append("sees the experience stored since its parent (memory snapshot moved)")
    return changes or ["(no change)"]


def rating_counts(data: Data) -> dict[tuple[str, str], int]:
    """(source, state) -> count; state is rated good/bad, verified pass/fail, pending or error."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for source, verdict, feedback in data.ratings:
        if (feedback or "").startswith("rated "):
            state = "rated good" if verdict == "pass" else "rated bad"
        elif verdict in ("pass", "fail"):
            state = f"verified {verdict}"
        else:
            state = verdict
        counts[(source, state)] += 1
    return dict(counts)


def phase_table(data: Data) -> tuple[list[str], dict[str, list[float]], dict[str, list[int]]]:
    """Seconds per phase and model tokens per cycle, one column per (run, cycle) Cycle row."""
    runs: dict[str, int] = {}
    labels = []
    seconds: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(data.cycles))
    tokens: dict[str, list[int]] = defaultdict(lambda: [0] * len(data.cycles))
    for i, c in enumerate(data.cycles):
        runs.setdefault(c.run_id, len(runs) + 1)
        labels.append(f"run {runs[c.run_id]}·c{c.number}")
        for phase, secs in (c.phase_seconds or {}).items():
            seconds[phase][i] += float(secs)
        tokens["all phases"][i] += int(c.tokens)
    return labels, dict(seconds), dict(tokens)


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
    # The newest decided cycle's accepted policy: the candidate when promoted, else the incumbent.
    last = decision_points(data)[-1] if decisions else None
    latest = None
    if last is not None:
        role = "candidate" if last["decision"] == "promote" else "incumbent"
        if role + "_acc" in last:
            latest = {"accuracy": last[role + "_acc"][0], "cycle": last["label"]}
    cards = [
        (inc.id if inc else "none", "incumbent policy" + (f" (v{inc.version})" if inc else "")),
        (f"{latest['accuracy']:.1%}" if latest else "n/a",
         f"held-out accuracy after {latest['cycle']}" if latest else "held-out accuracy"),
        (str(len(data.cycles)), f"cycles in {len({c.run_id for c in data.cycles})} run(s)"),
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

    parts.append('<section id="accuracy"><h2>Learning curve: held-out accuracy per decided cycle, across runs</h2>')
    if points:
        parts.append(plot_accuracy(decision_points(data)))
        rows = "".join(
            f"<tr><td>{_e(p['label'])}</td><td>{_e(p['role'])}</td><td>{_e(p['policy'])}</td>"
            f"<td>{_e(p['split'])}</td><td class=num>{p['n']}</td><td class=num>{p['accuracy']:.1%}</td>"
            f"<td class=num>{p['lo']:.1%} – {p['hi']:.1%}</td><td>{_e(p['decision'])}</td></tr>" for p in points)
        parts.append("<table><tr><th>run · cycle</th><th>role</th><th>policy</th><th>split</th><th>n</th>"
                     f"<th>accuracy</th><th>95% CI</th><th>decision</th></tr>{rows}</table>")
        runs = sorted({p["run"] for p in points}, key=lambda r: [p["run"] for p in points].index(r))
        parts.append("<p class=sub>" + "; ".join(f"run {i + 1} = {_e(r)}" for i, r in enumerate(runs)) + "</p>")
    else:
        parts.append(_empty("No evaluation runs yet: `evolve improve` evaluates every candidate."))
    parts.append("</section>")

    changes = policy_changes(data)
    parts.append('<section id="changes"><h2>What each candidate changed</h2>')
    if changes:
        body = "".join(
            f"<tr><td>{_e(c['label'])}</td><td>{_e(c['candidate'])}</td><td>{_e(c['incumbent'])}</td>"
            f"<td class=snip>{'<br>'.join(_e(_clip(x, 200)) for x in c['changes'])}</td>"
            f"<td><span class='tag {_e(c['decision'])}'>{_e(c['decision'])}</span></td></tr>" for c in changes)
        parts.append("<table><tr><th>run · cycle</th><th>candidate</th><th>tested against</th><th>changes</th>"
                     f"<th>decision</th></tr>{body}</table>")
    else:
        parts.append(_empty("No candidate has been tested yet."))
    parts.append("</section>")

    search = render_search(search_rows(data.promotions))
    if search:
        parts.append('<section id="search"><h2>The candidate search: screening, dev evidence, cost</h2>'
                     + search + "</section>")

    ratings = rating_counts(data)
    parts.append('<section id="ratings"><h2>Ratings from chat and the worker</h2>')
    if ratings:
        states = ["rated good", "rated bad", "verified pass", "verified fail", "pending", "error"]
        body = "".join(f"<tr><td>{_e(src)}</td>" + "".join(f"<td class=num>{ratings.get((src, st), 0)}</td>"
                                                          for st in states) + "</tr>"
                       for src in ("chat", "worker") if any(k[0] == src for k in ratings))
        parts.append("<p class=sub>Rated and verified answers are what the next cycle learns from; a rating "
                     "alone stays quarantined until a verified practice task confirms it.</p>")
        parts.append("<table><tr><th>source</th>" + "".join(f"<th>{_e(st)}</th>" for st in states)
                     + f"</tr>{body}</table>")
    else:
        parts.append(_empty("No chat turns or worker tasks yet."))
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
        parts.append(f"<p>{total_s:,.0f} s and {total_t:,} model tokens over {len(numbers)} cycle(s), "
                     "as each cycle recorded them.</p>")
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
