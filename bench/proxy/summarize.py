#!/usr/bin/env python3
"""Turns bench/proxy/run.sh's results.tsv and memory.tsv into markdown tables.

Usage: summarize.py OUT_DIR [CLK_TCK]   (run.sh calls it; it can be re-run on old output,
whose CPU columns were clock ticks: give CLK_TCK for those)

Every figure is the median over the rounds of one layout. Added p50 is computed per
round (target p50 minus the same round's direct p50), and every ratio per round too;
the tables give the median ratio and the range over the rounds. The paired short runs
(paired.tsv, if present) give one ratio per pair of back-to-back runs: `p<N>` rounds at
saturation, `l<N>` rounds at one connection, `q<CONNS>-<N>` rounds a proxied request
and both refusals at CONNS connections. Each paired median comes with a 95% bootstrap
interval (resampling the pairs, seeded), and its verdict says whether the interval
settles it: "met" or "missed" when the whole interval is on one side of the target,
"not settled" when it straddles it.
"""

import csv
import functools
import math
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path

RSS_LIMIT_BYTES = 30_000_000  # "under 30 MB"
PROXIES = ["nginx", "haproxy", "palisade"]
TARGETS = ["direct", "nginx", "haproxy", "palisade", "open-fallback", "open-503"]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def rng(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}" if len(xs) > 1 else ""


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def median_interval(xs):
    """A 95% percentile-bootstrap interval of the median of `xs` (pairs resampled)."""
    return _bootstrap(tuple(xs))


@functools.lru_cache(maxsize=None)
def _bootstrap(xs, resamples=2000, seed=1):
    # Cached: a figure's interval is printed in its table and judged in its verdict.
    if len(xs) < 3:
        return (float("nan"), float("nan"))
    rnd = random.Random(seed)
    meds = sorted(statistics.median(rnd.choices(xs, k=len(xs))) for _ in range(resamples))
    return (meds[int(0.025 * resamples)], meds[int(0.975 * resamples) - 1])


def settled(xs, target, good):
    """The verdict on a paired median: `good(v)` says which side of `target` meets it."""
    lo, hi = median_interval(xs)
    m = med(xs)
    if good(lo) and good(hi):
        return "met"
    if not good(lo) and not good(hi):
        return "**missed**"
    side = "met" if good(m) else "missed"
    return f"not settled (median {side}; interval {lo:.2f}–{hi:.2f} spans {target})"


def interval(xs):
    lo, hi = median_interval(xs)
    return "" if math.isnan(lo) else f"{lo:.2f}–{hi:.2f}"


def cpu_us(r, key, tick_us):
    """CPU µs per request of row `r`: `proxy` or `upstream` (nanoseconds; ticks in old output)."""
    req = int(r["requests"])
    if not req:
        return float("nan")
    if f"{key}_cpu_ns" in r:
        return int(r[f"{key}_cpu_ns"]) / 1000 / req
    return int(r[f"{key}_ticks"]) * tick_us / req


def paired_layouts(out):
    """The layouts in paired.tsv, in order of appearance."""
    path = out / "paired.tsv"
    if not path.exists():
        return []
    return list(dict.fromkeys(r["layout"] for r in csv.DictReader(open(path), delimiter="\t")))


def read_pairs(out, layout, prefix, targets):
    """The complete pairs of `layout` in paired.tsv whose rounds start with `prefix`
    (`p`: saturation, `l`: one connection), each as {target: row}."""
    path = out / "paired.tsv"
    if not path.exists():
        return []
    pairs = defaultdict(dict)
    for r in csv.DictReader(open(path), delimiter="\t"):
        if r["layout"] == layout and r["round"].startswith(prefix) and r["target"] in targets:
            pairs[r["round"]][r["target"]] = r
    return [p for p in pairs.values() if all(t in p for t in targets)]


def paired(out, tick_us, layout, verdicts):
    """The paired short runs of `layout`: palisade against HAProxy and nginx, pair by pair."""
    def figures(r):
        req = int(r["requests"])
        return {
            "rps": req / (int(r["duration_us"]) / 1e6),
            "cpu": cpu_us(r, "proxy", tick_us),
        }

    complete = [
        {t: figures(r) for t, r in pair.items()} for pair in read_pairs(out, layout, "p", PROXIES)
    ]
    if not complete:
        return
    print(f"Paired short runs ({len(complete)} pairs: HAProxy, palisade and nginx back to back):\n")
    print("| ratio | median | 95% interval | geometric mean | range | palisade ahead in |")
    print("|---|---|---|---|---|---|")
    for other in ["haproxy", "nginx"]:
        for what, key, better in [("req/s", "rps", lambda v: v >= 1.0), ("proxy CPU per request", "cpu", lambda v: v <= 1.0)]:
            vals = [p["palisade"][key] / p[other][key] for p in complete]
            ahead = sum(1 for v in vals if better(v))
            name = f"{what}: palisade ÷ {other}"
            print(
                f"| {name} | {med(vals):.3f} | {interval(vals)} | {geomean(vals):.3f} | {rng(vals)} "
                f"| {ahead} of {len(vals)} pairs |"
            )
            if other == "haproxy" and key == "rps":
                verdicts.append(
                    (layout, f"{name} (paired short runs)", f"{med(vals):.3f}", "≥ 1.0",
                     settled(vals, 1.0, lambda v: v >= 1.0))
                )
    print()


def paired_latency(out, layout, verdicts):
    """The paired one-connection runs of `layout`: palisade's added p50 against nginx's."""
    complete = [
        {t: float(r["p50_us"]) for t, r in pair.items()}
        for pair in read_pairs(out, layout, "l", ["direct", "nginx", "palisade"])
    ]
    # A pair whose nginx run added nothing over direct has no ratio.
    usable = [p for p in complete if p["nginx"] > p["direct"]]
    if not usable:
        return
    print(f"Paired one-connection runs ({len(usable)} pairs: direct, palisade and nginx back to back):\n")
    print("| figure | median | 95% interval | geometric mean | range | palisade ≤ nginx in |")
    print("|---|---|---|---|---|---|")
    added = {t: [p[t] - p["direct"] for p in usable] for t in ["nginx", "palisade"]}
    for t in ["nginx", "palisade"]:
        print(
            f"| added p50, {t} (µs) | {med(added[t]):.1f} | | {geomean(added[t]):.1f} "
            f"| {min(added[t]):.0f}–{max(added[t]):.0f} | |"
        )
    vals = [(p["palisade"] - p["direct"]) / (p["nginx"] - p["direct"]) for p in usable]
    positive = [v for v in vals if v > 0]
    at_most = sum(1 for v in vals if v <= 1.0)
    print(
        f"| added p50: palisade ÷ nginx | {med(vals):.2f} | {interval(vals)} | {geomean(positive):.2f} | {rng(vals)} "
        f"| {at_most} of {len(vals)} pairs |"
    )
    print()
    verdicts.append(
        (layout, "added p50 (c1): palisade ÷ nginx (paired short runs)", f"{med(vals):.2f}", "≤ 1.0",
         settled(vals, 1.0, lambda v: v <= 1.0))
    )


def paired_refusals(out, tick_us, layout, verdicts):
    """The paired refusal runs of `layout`: a refusal's CPU against a proxied request's, and
    for reference nginx's cheapest answer (the upstream's, from memory) and nginx proxying."""
    targets = ["palisade", "open-fallback", "open-503"]
    path = out / "paired.tsv"
    rows = []
    if path.exists():
        rows = [r for r in csv.DictReader(open(path), delimiter="\t")
                if r["layout"] == layout and r["round"].startswith("q")]
    for conns in sorted({int(r["conns"]) for r in rows}):
        complete = [
            {
                t: cpu_us(r, "upstream" if t == "direct" else "proxy", tick_us)
                for t, r in pair.items()
            }
            for pair in read_pairs(out, layout, f"q{conns}-", targets + ["direct", "nginx"])
        ]
        if not complete:
            continue
        print(f"Paired refusal runs at {conns} connection{'s' if conns > 1 else ''} "
              f"({len(complete)} pairs: proxied, both refusals, nginx's answer from memory and "
              f"nginx proxying, back to back):\n")
        print("| figure | median | 95% interval | range | under ½ in |")
        print("|---|---|---|---|---|")
        labels = {
            "palisade": "palisade proxying",
            "open-fallback": "palisade refusing, fallback",
            "open-503": "palisade refusing, 503",
            "direct": "nginx answering from memory (the upstream)",
            "nginx": "nginx proxying",
        }
        for t, label in labels.items():
            cpu = [p[t] for p in complete]
            print(f"| CPU per request, {label} (µs) | {med(cpu):.1f} | | {min(cpu):.1f}–{max(cpu):.1f} | |")
        for t in ["open-503", "open-fallback"]:
            vals = [p[t] / p["palisade"] for p in complete]
            under = sum(1 for v in vals if v < 0.5)
            name = f"rejected ({t}) ÷ proxied: palisade CPU per request (c{conns})"
            print(f"| {name} | {med(vals):.2f} | {interval(vals)} | {rng(vals)} | {under} of {len(vals)} pairs |")
            verdicts.append(
                (layout, f"{name} (paired short runs)", f"{med(vals):.2f}", "< 0.5",
                 settled(vals, 0.5, lambda v: v < 0.5))
            )
        # What the host allows: nginx's own cheapest answer against its proxied request. At
        # one connection each request wakes an idle process, and that wake-up is most of
        # the cheapest answer's cost.
        floor = [p["direct"] / p["nginx"] for p in complete]
        print(f"| for reference, nginx: answer from memory ÷ proxied (c{conns}) | {med(floor):.2f} "
              f"| {interval(floor)} | {rng(floor)} | |")
        cheapest = [p["open-503"] / p["direct"] for p in complete]
        print(f"| palisade's 503 refusal ÷ nginx's answer from memory (c{conns}) | {med(cheapest):.2f} "
              f"| {interval(cheapest)} | {rng(cheapest)} | |")
        print()
        verdicts.append(
            (layout, f"for reference, nginx: answer from memory ÷ proxied, CPU per request (c{conns})",
             f"{med(floor):.2f}", "", "")
        )


def rounds_tables(layout, rounds, conns_hi, verdicts):
    """The tables of the rounds of `layout`: medians of every target, ratios, verdicts."""
    rs = sorted(rounds)
    print(f"### Layout `{layout}` ({len(rs)} rounds, medians)\n")

    def per_round(f):
        vals = []
        for n in rs:
            try:
                v = f(rounds[n])
            except KeyError:
                continue
            vals.append(v)
        return vals

    print(
        f"| target | p50 at c1 (µs) | added p50 over direct (µs) | req/s at c{conns_hi} "
        f"| p50 / p99 at c{conns_hi} (µs) | proxy CPU per request (µs) "
        f"| upstream CPU per request (µs) | non-2xx / socket errors |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for t in TARGETS:
        c1 = per_round(lambda r: r[(t, 1)])
        hi = per_round(lambda r: r[(t, conns_hi)])
        if not c1 or not hi:
            continue
        added = per_round(lambda r: r[(t, 1)]["p50"] - r[("direct", 1)]["p50"])
        added_s = "—" if t == "direct" else f"{med(added):.1f}"
        proxy_cpu = "—" if t == "direct" else f"{med([x['proxy_us'] for x in hi]):.1f}"
        errs = sum(x["err_status"] for x in c1 + hi), sum(x["err_socket"] for x in c1 + hi)
        print(
            f"| {t} | {med([x['p50'] for x in c1]):.1f} | {added_s} "
            f"| {med([x['rps'] for x in hi]):,.0f} "
            f"| {med([x['p50'] for x in hi]):.0f} / {med([x['p99'] for x in hi]):.0f} "
            f"| {proxy_cpu} | {med([x['up_us'] for x in hi]):.1f} | {errs[0]} / {errs[1]} |"
        )
    print()

    def added(r, t):
        return r[(t, 1)]["p50"] - r[("direct", 1)]["p50"]

    ratios = [
        (
            "added p50 (c1): palisade ÷ nginx",
            per_round(lambda r: added(r, "palisade") / added(r, "nginx")),
            "≤ 1.0",
            lambda v: v <= 1.0,
        ),
        (
            "added p50 (c1): palisade ÷ haproxy",
            per_round(lambda r: added(r, "palisade") / added(r, "haproxy")),
            "",
            None,
        ),
        (
            f"req/s (c{conns_hi}): palisade ÷ haproxy",
            per_round(lambda r: r[("palisade", conns_hi)]["rps"] / r[("haproxy", conns_hi)]["rps"]),
            "≥ 1.0",
            lambda v: v >= 1.0,
        ),
        (
            f"req/s (c{conns_hi}): palisade ÷ nginx",
            per_round(lambda r: r[("palisade", conns_hi)]["rps"] / r[("nginx", conns_hi)]["rps"]),
            "",
            None,
        ),
    ]
    for t in ["open-503", "open-fallback"]:
        ratios += [
            (
                f"rejected ({t}) ÷ proxied: palisade CPU per request (c{conns_hi})",
                per_round(lambda r: r[(t, conns_hi)]["proxy_us"] / r[("palisade", conns_hi)]["proxy_us"]),
                "< 0.5",
                lambda v: v < 0.5,
            ),
            (
                # One request at a time: each has its own wake-ups, none shared.
                f"rejected ({t}) ÷ proxied: palisade CPU per request (c1)",
                per_round(lambda r: r[(t, 1)]["proxy_us"] / r[("palisade", 1)]["proxy_us"]),
                "< 0.5",
                lambda v: v < 0.5,
            ),
            (
                # Informational: a p50 includes wrk's and the kernel's round trip, the
                # same for both (the `direct` p50); the cost ratio is the CPU one above.
                f"rejected ({t}) ÷ proxied: p50 at c1 (wrk's round trip included)",
                per_round(lambda r: r[(t, 1)]["p50"] / r[("palisade", 1)]["p50"]),
                "",
                None,
            ),
            (
                f"rejected ({t}) ÷ proxied: req/s at c{conns_hi}, inverted (in `shared`, wrk competes for the same cores)",
                per_round(lambda r: r[("palisade", conns_hi)]["rps"] / r[(t, conns_hi)]["rps"]),
                "",
                None,
            ),
        ]
    print("| ratio | median | range over rounds | target | verdict |")
    print("|---|---|---|---|---|")
    for name, vals, target, ok in ratios:
        if not vals:
            continue
        m = med(vals)
        if ok is None:
            verdict = ""
        else:
            hits = sum(1 for v in vals if ok(v))
            verdict = "met" if ok(m) else "**missed**"
            if 0 < hits < len(vals):
                verdict += f" ({hits} of {len(vals)} rounds met)"
            verdicts.append((layout, name, f"{m:.2f}", target, verdict))
        print(f"| {name} | {m:.2f} | {rng(vals)} | {target} | {verdict} |")
    print()



def main():
    out = Path(sys.argv[1])
    tick_us = 1e6 / float(sys.argv[2]) if len(sys.argv) > 2 else 1e4  # old output only
    rows = list(csv.DictReader(open(out / "results.tsv"), delimiter="\t"))
    mem = list(csv.DictReader(open(out / "memory.tsv"), delimiter="\t"))
    conns_hi = max((int(r["conns"]) for r in rows), default=0)

    # data[layout][round][(target, conns)] = row with derived figures
    data = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        req = int(r["requests"])
        d = {
            "req": req,
            "rps": req / (int(r["duration_us"]) / 1e6),
            "p50": float(r["p50_us"]),
            "p99": float(r["p99_us"]),
            "err_status": int(r["err_status"]),
            "err_socket": int(r["err_socket"]),
            "proxy_us": cpu_us(r, "proxy", tick_us),
            "up_us": cpu_us(r, "upstream", tick_us),
        }
        data[r["layout"]][int(r["round"])][(r["target"], int(r["conns"]))] = d

    print("Machine and run:\n")
    print("```")
    print((out / "machine.txt").read_text().rstrip())
    print("```\n")

    verdicts = []
    layouts = list(data)
    for layout in paired_layouts(out):
        if layout not in layouts:
            layouts.append(layout)
    for layout in layouts:
        rounds = data.get(layout)
        if rounds:
            rounds_tables(layout, rounds, conns_hi, verdicts)
        else:
            print(f"### Layout `{layout}` (no rounds)\n")
        paired(out, tick_us, layout, verdicts)
        paired_latency(out, layout, verdicts)
        paired_refusals(out, tick_us, layout, verdicts)

        lm = [m for m in mem if m["layout"] == layout]
        if lm:
            print("| process | RSS before (MiB) | with idle connections (MiB, peak) | under wrk, same count (MiB, peak) | connections held |")
            print("|---|---|---|---|---|")
            by = defaultdict(dict)
            for m in lm:
                by[m["target"]][m["state"]] = m
            for t in PROXIES:
                if t not in by:
                    continue
                st = by[t]
                idle = next((v for k, v in st.items() if k.startswith("idle-")), None)
                busy = next((v for k, v in st.items() if k.startswith("wrk-")), None)

                def mib(m):
                    return f"{int(m['rss_kb']) / 1024:.1f}" if m else "—"

                print(f"| {t} | {mib(st.get('before'))} | {mib(idle)} | {mib(busy)} | {idle['detail'].strip() if idle else ''} |")
                if t == "palisade":
                    for label, m in [("idle", idle)]:
                        if m:
                            b = int(m["rss_kb"]) * 1024
                            verdicts.append(
                                (
                                    layout,
                                    f"palisade RSS at {m['state'].split('-')[-1]} connections, {label}",
                                    f"{b / 1e6:.1f} MB",
                                    "< 30 MB",
                                    "met" if b < RSS_LIMIT_BYTES else "**missed**",
                                )
                            )
            print()

        req_file = out / "raw" / f"{layout}-palisade-requests.txt"
        if req_file.exists():
            print("palisade's own count of its answers (`palisade_requests_total`, whole layout):\n")
            print("```")
            print(req_file.read_text().rstrip())
            print("```\n")

    print("### Verdicts\n")
    print("| layout | target | measured | wanted | verdict |")
    print("|---|---|---|---|---|")
    for v in verdicts:
        print("| " + " | ".join(v) + " |")


if __name__ == "__main__":
    main()
