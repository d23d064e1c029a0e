"""The trigger chain as people see it: the hops omnirecon learned (the ledger's newest window of each), a picture of
them (systems as nodes, hops as arrows coloured by state and labelled with mechanism and p95), and each hop's recent
history. Used by the omnirecon view in the Airflow UI and by the daily report."""
from __future__ import annotations

import io
import math
from datetime import datetime, timedelta

from omnirecon.ledger import queries
from omnirecon.timeutil import iso, parse_ts

STATE_COLOURS = {"ok": "#2e7d32", "slow": "#ef8f00", "broken": "#c62828", "unknown": "#9e9e9e"}
STATE_ORDER = {"broken": 0, "slow": 1, "unknown": 2, "ok": 3}
HISTORY_DAYS = 7


def _r(v):
    return None if v is None else round(float(v), 1)


def hop_view(w) -> dict:
    """A ledger hop window in the shape of trigger_chain.json's hops, plus its label."""
    hop = {"from": w.from_system, "to": w.to_system, "kind": w.kind, "mechanism": w.mechanism,
           "poll_interval_s": _r(w.poll_interval_s), "resolution_s": _r(w.resolution_s),
           "latency_s": {"p50": _r(w.latency_p50_s), "p95": _r(w.latency_p95_s), "max": _r(w.latency_max_s)},
           "changes_seen": w.changes_seen, "followed": w.followed, "missed": w.missed, "state": w.state,
           "since": iso(parse_ts(w.since)) if w.since else None, "diagnosis": w.diagnosis,
           "exposure": w.exposure or {}, "window_to": iso(parse_ts(w.window_to))}
    hop["label"] = hop_label(hop)
    return hop


def hop_label(hop: dict) -> str:
    """'event · p95 3.1 s', 'poll 60 s · p95 58.0 s', 'broken: 4 missed'."""
    mech = hop.get("mechanism") or "unknown"
    if mech == "poll" and hop.get("poll_interval_s"):
        mech = f"poll {hop['poll_interval_s']:g} s"
    p95 = (hop.get("latency_s") or {}).get("p95")
    parts = [mech] + ([f"p95 {p95:g} s"] if p95 is not None else [])
    if hop.get("state") == "broken":
        parts.append(f"{hop.get('missed', 0)} missed")
    return " · ".join(parts)


def chain_hops(s) -> list[dict]:
    """Every hop ever mapped, at its newest window: broken first, then slow, unknown, ok."""
    hops = [hop_view(w) for w in queries.latest_hop_windows(s).values()]
    return sorted(hops, key=lambda h: (STATE_ORDER.get(h["state"], 9), h["from"], h["to"], h["kind"]))


def hop_history(s, now: datetime, days: int = HISTORY_DAYS) -> list[dict]:
    """Per hop, its state in each of the last `days` days (the worst window of the day; None: not seen that day)."""
    start = (now - timedelta(days=days - 1)).date()
    dates = [start + timedelta(days=i) for i in range(days)]
    out: dict[tuple, dict] = {}
    for w in queries.hop_history(s, since=datetime.combine(start, datetime.min.time(), tzinfo=now.tzinfo)):
        key = (w.from_system, w.to_system, w.kind)
        row = out.setdefault(key, {"hop": f"{key[0]}->{key[1]}", "kind": key[2], "days": {d: None for d in dates}})
        day = parse_ts(w.window_to).date()
        if day in row["days"]:
            was = row["days"][day]
            if was is None or STATE_ORDER.get(w.state, 9) < STATE_ORDER.get(was, 9):
                row["days"][day] = w.state
    return [{"hop": r["hop"], "kind": r["kind"],
             "days": [{"date": d.isoformat(), "state": st} for d, st in r["days"].items()]}
            for _, r in sorted(out.items())]


def summary(hops: list[dict]) -> dict:
    return {"hops": len(hops), **{state: sum(h["state"] == state for h in hops) for state in STATE_COLOURS}}


def _positions(hops: list[dict]) -> dict[str, tuple[float, float]]:
    """The ERP on the left, every other system on an arc on the right."""
    others = sorted(({h["from"] for h in hops} | {h["to"] for h in hops}) - {"erp"})
    pos = {"erp": (0.0, 0.0)}
    n = len(others)
    for i, system in enumerate(others):
        angle = math.radians(0 if n == 1 else 50 - 100 * i / (n - 1))
        pos[system] = (7.0 * math.cos(angle), 3.6 * math.sin(angle))
    return pos


def render_chain_png(hops: list[dict]) -> bytes | None:
    """The chain as a PNG (matplotlib Agg), or None when no hop is mapped yet."""
    if not hops:
        return None
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyArrowPatch

    pos = _positions(hops)
    fig = Figure(figsize=(8.5, 5.2), dpi=100)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.axis("off")
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.6, max(xs) + 1.9)
    ax.set_ylim(min(ys) - 1.3, max(ys) + 1.3)
    pairs: dict[frozenset, int] = {}
    for h in hops:
        (x1, y1), (x2, y2) = pos[h["from"]], pos[h["to"]]
        n = pairs.get(frozenset((h["from"], h["to"])), 0)
        pairs[frozenset((h["from"], h["to"]))] = n + 1
        rad = 0.12 + 0.14 * n                 # several hops between one pair: each on its own arc
        colour = STATE_COLOURS.get(h["state"], STATE_COLOURS["unknown"])
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=16, lw=2.2, color=colour, shrinkA=26, shrinkB=26,
                                     linestyle="--" if h["state"] == "broken" else "-"))
        # the arc's middle (a quadratic curve through the arc3 control point)
        mx, my = (x1 + x2) / 2 + rad * (y2 - y1) / 2, (y1 + y2) / 2 - rad * (x2 - x1) / 2
        ax.text(mx, my, f"{h['kind']}: {h['label']}", fontsize=7.5, ha="center", va="center", color=colour,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "lw": 0.6})
    for system, (x, y) in pos.items():
        ax.scatter([x], [y], s=2300, color="#eceff1", edgecolors="#37474f", linewidths=1.4, zorder=3)
        ax.text(x, y, "ERP" if system == "erp" else system, ha="center", va="center", fontsize=10,
                fontweight="bold", color="#263238", zorder=4)
    handles = [Line2D([], [], color=c, lw=2.2, label=s) for s, c in STATE_COLOURS.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False, ncol=4)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()
