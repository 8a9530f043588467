"""The report's view of the candidate search: every candidate of every cycle, where it stopped
(screened out on train, or evaluated on dev), its evidence and what it cost.

A cycle with several candidates records one decision row per candidate (agent/loop/graph.py);
their evidence holds the screening score, the dev comparison with the Holm-adjusted p, whether
the futility or the early-success stop cut the evaluation short, and tokens per task and per correct answer."""

from __future__ import annotations

import html
from typing import Any

from memory.models import Promotion


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def search_rows(promotions: list[Promotion]) -> list[dict[str, Any]]:
    """One row per recorded candidate that went through the search (evidence with a stage)."""
    rows = []
    for p in promotions:
        ev = p.evidence or {}
        stage = ev.get("stage")
        if p.decision not in ("promote", "reject") or stage not in ("screen", "dev"):
            continue
        screen, inc_screen = ev.get("screen") or {}, ev.get("incumbent_screen") or {}
        cost = ev.get("cost") or {}
        inc_cost = ev.get("incumbent_cost") or {}
        rows.append({
            "run": str(ev.get("run_id") or ""), "cycle": p.cycle, "candidate": p.candidate_id,
            "proposer": str(ev.get("proposer") or ""), "stage": stage, "decision": p.decision,
            "screen": (f"{screen['correct']}/{screen['n']} vs {inc_screen.get('correct', screen.get('incumbent_correct'))}"
                       if screen.get("n") else ""),
            "n": int(ev.get("n") or p.n or 0) if stage == "dev" else 0,
            "n_planned": int(ev.get("n_planned") or 0), "stopped_early": bool(ev.get("stopped_early")),
            "stopped_for_efficacy": bool(ev.get("stopped_for_efficacy")),
            "delta": ev.get("delta") if stage == "dev" else None,
            "ci": (ev.get("ci_low"), ev.get("ci_high")) if stage == "dev" else (None, None),
            "p": ev.get("p_value") if stage == "dev" else None,
            "p_adjusted": ev.get("p_adjusted") if stage == "dev" else None,
            "tokens_per_task": cost.get("tokens_per_task") if stage == "dev" else (screen.get("cost") or {}).get("tokens_per_task"),
            "tokens_per_correct": cost.get("tokens_per_correct") if stage == "dev" else (screen.get("cost") or {}).get("tokens_per_correct"),
            "incumbent_tokens_per_task": inc_cost.get("tokens_per_task"),
            "cost_ratio": ev.get("cost_ratio"),
            "reason": str(ev.get("reason") or ""),
        })
    return rows


def render_search(rows: list[dict[str, Any]]) -> str:
    e = html.escape
    if not rows:
        return ""
    body = []
    for r in rows:
        stop = " (futility stop)" if r["stopped_early"] else " (early success)" if r.get("stopped_for_efficacy") else ""
        evaluated = f"{r['n']}/{r['n_planned']}{stop}" if r["stage"] == "dev" else "–"
        ci = (f"[{_num(r['ci'][0], '+.3f')}, {_num(r['ci'][1], '+.3f')}]" if r["ci"][0] is not None else "–")
        body.append(
            f"<tr><td>{e(str(r['cycle']))}</td><td>{e(r['candidate'])}</td><td>{e(r['proposer'])}</td>"
            f"<td>{e(r['stage'])}</td><td class=num>{e(r['screen'] or '–')}</td><td class=num>{e(evaluated)}</td>"
            f"<td class=num>{_num(r['delta'], '+.3f')}</td><td class=num>{e(ci)}</td>"
            f"<td class=num>{_num(r['p'], '.3g')}</td><td class=num>{_num(r['p_adjusted'], '.3g')}</td>"
            f"<td class=num>{_num(r['tokens_per_task'], ',.0f')}</td><td class=num>{_num(r['tokens_per_correct'], ',.0f')}</td>"
            f"<td class=num>{_num(r['cost_ratio'], '.2f')}</td>"
            f"<td><span class='tag {e(r['decision'])}'>{e(r['decision'])}</span></td>"
            f"<td class=snip>{e(r['reason'][:200])}</td></tr>")
    return ("<p class=sub>Every candidate of every cycle: screened on a train minibatch (correct vs the "
            "incumbent's), then evaluated on dev against the incumbent on the same items; p is exact "
            "McNemar, adjusted by Holm over the cycle's dev candidates. Tokens are per task and per "
            "correct answer; the cost ratio is the candidate's tokens per task over the incumbent's.</p>"
            "<table><tr><th>cycle</th><th>candidate</th><th>proposer</th><th>stage</th><th>screen</th>"
            "<th>dev items</th><th>delta</th><th>95% CI</th><th>p</th><th>p (Holm)</th><th>tokens/task</th>"
            "<th>tokens/correct</th><th>cost ratio</th><th>decision</th><th>reason</th></tr>"
            + "".join(body) + "</table>")
