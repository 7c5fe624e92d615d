#!/usr/bin/env python3
"""One benchmark report from the scenarios' results files: WAL drain (bench/wal_push.py), base
backup and restore (bench/backup.py) and PITR end to end (bench/pitr.py).

Reads bench/results/{wal_push,backup,pitr}-<date>[-quick].json (for a scenario without a file of
that date, its newest file of the same mode, and the report says which), and writes
bench/results/<date>[-quick].json (the headline rows and targets), <date>[-quick].md (tables:
walrus, each peer, the floor, ratios; the machine's noise) and <date>[-quick].png (a chart of
the headline ratios, peer time / walrus time and walrus time / floor time).

Usage: .venv/bin/python bench/report.py [--quick] [--date YYYY-MM-DD] [--results DIR]
"""
import argparse
import datetime
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import RESULTS, render_md  # noqa: E402

SCENARIOS = ("wal_push", "backup", "backup-delta", "pitr")


def find_results(results, name, date, quick):
    """(path, date used) of a scenario's results file, or (None, None)."""
    suffix = "-quick" if quick else ""
    exact = os.path.join(results, "%s-%s%s.json" % (name, date, suffix))
    if os.path.exists(exact):
        return exact, date
    pattern = os.path.join(results, "%s-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]%s.json" % (name, suffix))
    found = sorted(glob.glob(pattern))
    if not found:
        return None, None
    return found[-1], os.path.basename(found[-1])[len(name) + 1:len(name) + 11]


def busy(values):
    """'median a, max b' of busy fractions (None ignored)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return "n/a"
    return "median %.2f, max %.2f" % (values[len(values) // 2], values[-1])


def row(scenario, what, unit, walrus, peers, floor, lower_is_better=True):
    """One headline row: walrus's value, each peer's and the floor's, with ratios."""
    out = {"scenario": scenario, "what": what, "unit": unit, "walrus": walrus, "peers": peers, "floor": floor,
           "peer_over_walrus": {}, "walrus_over_floor": None}
    if walrus:
        for peer, value in peers.items():
            if value:
                out["peer_over_walrus"][peer] = round(value / walrus, 2)
        if floor:
            out["walrus_over_floor"] = round(walrus / floor, 2)
    return out


def wal_rows(data):
    by = dict((r["archiver"], r) for r in data.get("results", ()) if r.get("ok"))

    def sps(name):
        return by[name]["seconds_per_segment"] if name in by else None
    rows = []
    for me, label in (("walrus-s3", "http"), ("walrus-s3-https", "https")):
        if sps(me):
            rows.append(row("WAL drain", "seconds per segment, walrus S3 (%s)" % label, "s/segment", sps(me),
                            dict((p, sps(p)) for p in ("pgbackrest-async", "pgbackrest-sync", "pgbackrest-sync-lz4",
                                                       "barman-cloud") if sps(p)), sps("cp")))
    if sps("walrus-fs"):
        rows.append(row("WAL drain", "seconds per segment, walrus local directory", "s/segment", sps("walrus-fs"),
                        {}, sps("cp")))
    noise = [r.get("machine_busy_before") for r in data.get("results", ())]
    return rows, noise


def backup_rows(data):
    rows, noise = [], []
    scales = sorted(set(s["scale"] for s in data.get("summaries", ())))
    for scale in scales:
        by = dict((s["tool"], s) for s in data["summaries"] if s["scale"] == scale and "backup_seconds" in s)
        for s in by.values():
            noise += s.get("backup_busy_before_all", []) + s.get("restore_busy_before_all", [])
        for step in ("backup", "restore"):
            key = step + "_seconds"
            w = by.get("walrus-https") or by.get("walrus-http")
            if not w:
                continue
            rows.append(row("base %s" % step, "%s seconds, pgbench scale %d (walrus %s)" % (
                step, scale, w["tool"][len("walrus-"):]), "s", w[key],
                dict((p, by[p][key]) for p in ("pgbackrest-lz4", "pgbackrest-gz", "barman-cloud") if p in by),
                by["floor"][key] if "floor" in by else None))
            rss = step + "_peak_rss_mb"
            rows.append(row("base %s" % step, "%s peak RSS MB, scale %d" % (step, scale), "MB", w[rss],
                            dict((p, by[p][rss]) for p in ("pgbackrest-lz4", "pgbackrest-gz", "barman-cloud")
                                 if p in by), None))
    return rows, noise


def pitr_rows(data):
    by = dict((s["variant"], s) for s in data.get("summaries", ()) if "total_seconds" in s)
    rows, noise = [], []
    for s in by.values():
        noise += [pair[0] for pair in s.get("busy_before_all", [])]  # the second: walrus's own worker at work
    w = by.get("walrus-prefetch")
    if w:
        src = data.get("source", {})
        size = "%.2f GB WAL" % (src.get("wal_bytes_after_backups", 0) / 1024.0 ** 3)
        for key, what in (("total_seconds", "restore + replay seconds"), ("replay_seconds", "replay seconds"),
                          ("restore_seconds", "base restore seconds")):
            peers = dict((p, by[p][key]) for p in ("pgbackrest", "barman-cloud", "walrus-noprefetch") if p in by)
            rows.append(row("PITR", "%s, %s (walrus prefetch)" % (what, size), "s", w[key], peers,
                            by["floor"][key] if "floor" in by else None))
    return rows, noise


def delta_rows(data):
    """Delta backups after 1% and 10% change: walrus --delta against pgBackRest incr (and diff)."""
    rows = []
    medians = data.get("delta_medians", ())
    for scale in sorted(set(m["scale"] for m in medians)):
        for step in ("1%", "10%"):
            by = dict((m["tool"].split()[0], m) for m in medians if m["scale"] == scale and m["step"].startswith(step)
                      and not m["tool"].endswith(" diff"))
            w = next((m for tool, m in by.items() if tool.startswith("walrus")), None)
            if not w:
                continue
            peers = dict((tool, m) for tool, m in by.items() if not tool.startswith("walrus"))
            rows.append(row("delta backup", "seconds after %s change, scale %d" % (step, scale), "s", w["seconds"],
                            dict((t + " incr", m["seconds"]) for t, m in peers.items()), None))
            rows.append(row("delta backup", "stored MB after %s change, scale %d" % (step, scale), "MB",
                            round(w["stored_bytes"] / 1e6, 1),
                            dict((t + " incr", round(m["stored_bytes"] / 1e6, 1)) for t, m in peers.items()), None))
    return rows, []


EXTRACT = {"wal_push": wal_rows, "backup": backup_rows, "backup-delta": delta_rows, "pitr": pitr_rows}


def fmt(value):
    if value is None:
        return "-"
    return "%.3f" % value if value < 1 else "%.2f" % value


def markdown(report):
    out = ["# walrus benchmark report, %s (%s mode)" % (report["date"], report["mode"]), "",
           "Commands: `%s`, then `%s`." % ("`, `".join(s["command"] for s in report["sources"].values()),
                                          report["command"]), "",
           "All scenarios on one machine (%s CPUs) and a SeaweedFS S3 server on loopback, peers configured as "
           "in each scenario's own report. **Noise:** %s; the busy fraction of all CPUs just before the timed "
           "steps, per scenario, is below. Single runs of a few seconds can be off by 20-50%% on a shared machine. "
           "Medians where a scenario repeats." % (report["cpus"], noise_words(report)), "",
           "Ratios: `peer / walrus` above 1 = walrus faster (or smaller); `walrus / floor` = how far walrus is "
           "from the floor (local cp / tar|lz4; 1 = as fast as the floor).", ""]
    for scenario in ("WAL drain", "base backup", "base restore", "delta backup", "PITR"):
        rows = [r for r in report["rows"] if r["scenario"] == scenario]
        if not rows:
            continue
        peers = []
        for r in rows:
            peers += [p for p in r["peers"] if p not in peers]
        header = ["what", "walrus"] + peers + ["floor"] + ["%s / walrus" % p for p in peers] + ["walrus / floor"]
        body = [[r["what"], fmt(r["walrus"])] + [fmt(r["peers"].get(p)) for p in peers] + [fmt(r["floor"])]
                + ["%.2f" % r["peer_over_walrus"][p] if p in r["peer_over_walrus"] else "-" for p in peers]
                + ["%.2f" % r["walrus_over_floor"] if r["walrus_over_floor"] else "-"] for r in rows]
        out += ["## %s" % scenario, "", render_md(header, body), ""]
    out += ["## Targets", "", "| scenario | target | ratio | met |", "|---|---|---:|---|"]
    for t in report["targets"]:
        out.append("| %s | %s | %s | %s |" % (t["scenario"], t["name"], t.get("ratio", t.get("value")),
                                             "yes" if t["met"] else "**NO**"))
    out += ["", "![headline ratios](%s)" % os.path.basename(report["chart"]) if report.get("chart") else "", "",
            "## Sources and the machine's noise", "", "| scenario | results file | date | walrus engine (commit, code hash) | CPUs busy just before timed steps |",
            "|---|---|---|---|---|"]
    for name, s in report["sources"].items():
        out.append("| %s | %s | %s | %s | %s |" % (name, s["file"], s["date"], s["engine"], s["busy"]))
    if report.get("missing"):
        out += ["", "Missing scenarios (no results file): %s" % ", ".join(report["missing"])]
    if report.get("notes"):
        out += ["", "## Notes", ""] + ["- %s" % n for n in report["notes"]]
    return "\n".join(out) + "\n"


def short(what):
    """A chart label: the headline without the parenthesised details (but the transport, which
    tells two WAL drain rows apart)."""
    head, _, detail = what.partition(" (")
    if detail.rstrip(")") in ("http", "https"):
        head += " " + detail.rstrip(")")
    return head.replace("seconds per segment", "WAL drain s/segment")[:48]


QUIET = 0.1  # busy fraction of all CPUs below which the machine counts as quiet


def noise_words(report):
    """How the report describes the machine: quiet, or shared, from the busiest sample."""
    busiest = report.get("busiest")
    if busiest is not None and busiest < QUIET:
        return "quiet machine (every CPU sample before a timed step under %d%% busy)" % (QUIET * 100)
    return "shared machine: noisy"


def chart(report, path):
    """A horizontal bar chart: peer time / walrus time per headline (log scale), and walrus / floor."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    picks = [r for r in report["rows"] if r["unit"] != "MB" and (r["peer_over_walrus"] or r["walrus_over_floor"])]
    labels, values, colors = [], [], []
    palette = {"pgbackrest": "#4c72b0", "barman": "#dd8452", "walrus-noprefetch": "#8172b3", "floor": "#55a868"}
    for r in picks:
        for peer, ratio in sorted(r["peer_over_walrus"].items()):
            labels.append("%s: %s / walrus" % (short(r["what"]), peer))
            values.append(ratio)
            colors.append(next((c for k, c in palette.items() if peer.startswith(k)), "#937860"))
        if r["walrus_over_floor"]:
            labels.append("%s: walrus / floor" % short(r["what"]))
            values.append(r["walrus_over_floor"])
            colors.append(palette["floor"])
    if not values:
        return None
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(values) + 1.6))
    ypos = range(len(values))[::-1]
    ax.barh(list(ypos), values, color=colors)
    ax.set_yticks(list(ypos))
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(min(0.5, min(values) * 0.8), max(values) * 1.6)
    for y, v in zip(ypos, values):
        ax.text(v, y, " %.2f" % v, va="center", fontsize=7)
    ax.set_xlabel("ratio (log scale). peer / walrus > 1: walrus faster. walrus / floor: distance from the floor")
    ax.set_title("walrus benchmark %s (%s mode; %s)" % (report["date"], report["mode"], noise_words(report).split(" (")[0]),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def collect_targets(name, data):
    out = []
    for tname, t in (data.get("targets") or {}).items():
        ratio = t.get("ratio", t.get("peer_over_walrus", t.get("walrus_over_peer", t.get("median_ms"))))
        out.append({"scenario": name, "name": tname, "ratio": ratio, "met": bool(t.get("met"))})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="aggregate the quick-mode results files")
    parser.add_argument("--date", default=datetime.date.today().isoformat(), help="YYYY-MM-DD (default today)")
    parser.add_argument("--results", default=RESULTS, help="directory of the scenarios' results (and the report)")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the report's notes (repeatable)")
    args = parser.parse_args()
    report = {"date": args.date, "mode": "quick" if args.quick else "full",
              "command": " ".join([".venv/bin/python", "bench/report.py"] + sys.argv[1:]),
              "sources": {}, "rows": [], "targets": [], "missing": [], "notes": list(args.note), "cpus": os.cpu_count()}
    for name in SCENARIOS:
        path, date = find_results(args.results, name, args.date, args.quick)
        if not path:
            report["missing"].append(name)
            continue
        with open(path) as handle:
            data = json.load(handle)
        rows, noise = EXTRACT[name](data)
        samples = [v for v in noise if v is not None]
        if samples:
            report["busiest"] = max([report.get("busiest") or 0.0] + samples)
        report["rows"] += rows
        report["targets"] += collect_targets(name, data)
        env = data.get("environment", {})
        report["cpus"] = env.get("cpus", report["cpus"])
        report["sources"][name] = {"file": os.path.basename(path), "date": date, "command": data.get("command"),
                                   "engine": "%s (%s)" % (env.get("git_commit"), env.get("walrus_engine_sha256")),
                                   "busy": busy(noise), "failures": data.get("failures", [])}
        if date != args.date:
            report["notes"].append("%s: no results of %s; used %s" % (name, args.date, os.path.basename(path)))
        for failure in data.get("failures", []) or []:
            report["notes"].append("%s failure: %s" % (name, str(failure)[:300]))
    stem = os.path.join(args.results, args.date + ("-quick" if args.quick else ""))
    report["chart"] = chart(report, stem + ".png")
    if report["chart"]:
        report["chart"] = os.path.relpath(report["chart"], os.path.dirname(stem))
    with open(stem + ".json", "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    with open(stem + ".md", "w") as handle:
        handle.write(markdown(report))
    sys.stdout.write(markdown(report))
    print("\nwrote %s.json, .md%s" % (stem, " and .png" if report["chart"] else " (no chart: matplotlib missing)"))
    return 1 if report["missing"] else 0


if __name__ == "__main__":
    sys.exit(main())
