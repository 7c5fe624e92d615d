# SPDX-License-Identifier: GPL-3.0-or-later
"""Drill history: the reports `walrus drill` stored under drills/<id>/report.json (drill.py),
listed oldest first, as a table or as one self-contained HTML page (inline CSS and SVG, no
script, no external asset) with a chart of RTO and RPO over time and each drill's checks.

`walrus drill-list [--json] [--html FILE]`; status.py reads the newest report from here.
"""
import calendar
import html
import json
import math
import time

from . import codec
from .drill import PREFIX, REPORT_FORMAT, report_key
from .errors import IntegrityError, NotFound, WalrusError

REPORT_LEAF = "report.json"


def epoch(text):
    """Seconds since the epoch of a 'YYYY-MM-DDTHH:MM:SSZ' time, or None."""
    try:
        return calendar.timegm(time.strptime(str(text), "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def report_ids(storage):
    """The ids of the drills that stored a JSON report, in id order (ids start with the UTC
    start time, so this is start order for drills run from hosts with sane clocks)."""
    ids = set()
    for key, _size in storage.list(PREFIX):
        parts = key[len(PREFIX):].split("/")
        if len(parts) == 2 and parts[1] == REPORT_LEAF and parts[0]:
            ids.add(parts[0])
    return sorted(ids)


def read_report(storage, drill_id):
    """One verified, parsed drill report; NotFound when it is not stored."""
    key = report_key(drill_id, REPORT_LEAF)
    where = storage.describe(key)
    raw = codec.decode(storage.get(key), where)
    try:
        report = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError("drill report %s is not valid JSON: %s" % (where, exc))
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT or report.get("id") != drill_id:
        raise IntegrityError("%s is not the walrus drill report of drill %s" % (where, drill_id))
    return report


def _read_some(storage, ids, problems):
    for drill_id in ids:
        try:
            yield read_report(storage, drill_id)
        except NotFound:
            continue  # deleted while we listed
        except WalrusError as exc:
            if problems is None:
                raise
            problems.append(str(exc))


def list_reports(storage, problems=None):
    """Every stored drill report, oldest first (by start time, then id). A report that cannot
    be read is left out and its error appended to `problems` when a list is given."""
    found = list(_read_some(storage, report_ids(storage), problems))
    found.sort(key=lambda r: (str(r.get("started_at")), r["id"]))
    return found


def latest_report(storage, problems=None):
    """The newest readable drill report (by id), or None; reads only as many as it must."""
    for report in _read_some(storage, reversed(report_ids(storage)), problems):
        return report
    return None


def failed_checks(report):
    return [c.get("name") for c in report.get("checks") or () if c.get("ok") is False]


def summary(report):
    """The fields of a report that the listing, status and metrics show."""
    return {"id": report["id"], "host": report.get("host"), "backup": report.get("backup"),
            "passed": bool(report.get("passed")), "started_at": report.get("started_at"),
            "finished_at": report.get("finished_at"), "rto_seconds": report.get("rto_seconds"),
            "rpo_seconds": report.get("rpo_seconds"), "failed_checks": failed_checks(report),
            "report_key": report_key(report["id"], REPORT_LEAF)}


def _seconds(value):
    return "-" if value is None else "%.1f s" % value


def render(reports):
    """Lines of a readable table of drill reports (oldest first)."""
    header = ("ID", "BACKUP", "PASSED", "RTO", "RPO", "FAILED CHECKS")
    rows = [header]
    for report in reports:
        rows.append((report["id"], str(report.get("backup") or "-"), "yes" if report.get("passed") else "NO",
                     _seconds(report.get("rto_seconds")), _seconds(report.get("rpo_seconds")),
                     ", ".join(failed_checks(report)) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


# The HTML page ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em;color:#1d2430;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #d0d6de;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#f2f4f7}
.pass{color:#17803d;font-weight:600}.fail{color:#c22;font-weight:600}.skip{color:#777}
.meta{color:#555;font-size:.9em}
td.detail{max-width:60em;word-break:break-word}
svg text{font-family:inherit;font-size:11px;fill:#333}
"""
_RTO_COLOR, _RPO_COLOR, _FAIL_COLOR = "#2563eb", "#d97706", "#cc2222"


def _nice_step(top):
    """A round step (1, 2 or 5 times a power of ten) giving about four grid lines up to top."""
    raw = max(top, 1e-9) / 4.0
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _chart(reports, width=760, height=280):
    """An inline SVG: RTO and RPO (seconds) against drill start time; failed drills ringed red."""
    esc = html.escape
    left, right, top, bottom = 60, 20, 20, 50
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(epoch(r.get("started_at")), r) for r in reports]
    points = [(t, r) for t, r in points if t is not None]
    values = [r.get(k) for _t, r in points for k in ("rto_seconds", "rpo_seconds") if r.get(k) is not None]
    step = _nice_step(max(values) if values else 1.0)
    y_max = step * max(1, math.ceil((max(values) if values else 1.0) / step))
    times = [t for t, _r in points]
    t_min, t_max = (min(times), max(times)) if times else (0, 0)
    by_index = t_max == t_min  # one drill, or all in one second: space them evenly

    def x_of(i, t):
        if by_index:
            return left + (plot_w * (i + 0.5) / len(points) if points else plot_w / 2.0)
        return left + plot_w * (t - t_min) / float(t_max - t_min)

    def y_of(value):
        return top + plot_h - plot_h * value / float(y_max)

    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" '
           'aria-label="RTO and RPO of each restore drill over time">' % (width, height, width, height),
           '<rect x="%d" y="%d" width="%d" height="%d" fill="#fafbfc" stroke="#d0d6de"/>' % (left, top, plot_w, plot_h)]
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = y_of(tick)
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e3e7ec"/>' % (left, y, left + plot_w, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s s</text>' % (left - 6, y + 4, ("%g" % tick)))
        tick += step
    if points:
        labels = [0, len(points) - 1] if len(points) > 1 else [0]
        if len(points) > 2:
            labels.append(len(points) // 2)  # after the ends, which always get theirs
        placed = []
        for i in labels:
            t, report = points[i]
            x = x_of(i, t)
            if any(abs(x - other) < 110 for other in placed):
                continue  # drills close in time: one label, not a smudge of overlapping ones
            placed.append(x)
            anchor = "start" if i == 0 and len(points) > 1 else ("end" if i == len(points) - 1 and i else "middle")
            out.append('<text x="%.1f" y="%d" text-anchor="%s">%s</text>' % (
                x, top + plot_h + 18, anchor, esc(str(report.get("started_at", ""))[:16].replace("T", " "))))
    out.append('<text x="%d" y="%d" text-anchor="middle">drill start (UTC)</text>' % (left + plot_w // 2, height - 8))
    for key, color, label in (("rto_seconds", _RTO_COLOR, "RTO"), ("rpo_seconds", _RPO_COLOR, "RPO")):
        series = [(x_of(i, t), y_of(r[key]), r) for i, (t, r) in enumerate(points) if r.get(key) is not None]
        if len(series) > 1:
            out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (
                color, " ".join("%.1f,%.1f" % (x, y) for x, y, _r in series)))
        for x, y, report in series:
            ring = "" if report.get("passed") else ' stroke="%s" stroke-width="3"' % _FAIL_COLOR
            out.append('<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"%s><title>%s %s: %s %.1f s (%s)</title></circle>' % (
                x, y, color, ring, esc(report["id"]), esc(str(report.get("started_at", ""))), label, report[key],
                "passed" if report.get("passed") else "FAILED"))
    legend_x = left + 10
    for offset, (color, label) in enumerate(((_RTO_COLOR, "RTO (restore + replay)"),
                                             (_RPO_COLOR, "RPO (age of newest recovered transaction)"))):
        y = top + 14 + 16 * offset
        out.append('<rect x="%d" y="%d" width="12" height="4" fill="%s"/>' % (legend_x, y - 4, color))
        out.append('<text x="%d" y="%d">%s</text>' % (legend_x + 18, y + 1, label))
    y = top + 46
    out.append('<circle cx="%d" cy="%d" r="4.5" fill="#fff" stroke="%s" stroke-width="3"/>' % (legend_x + 6, y - 2, _FAIL_COLOR))
    out.append('<text x="%d" y="%d">failed drill</text>' % (legend_x + 18, y + 2))
    if not points:
        out.append('<text x="%d" y="%d" text-anchor="middle">no drill yet</text>' % (left + plot_w // 2, top + plot_h // 2))
    out.append("</svg>")
    return "\n".join(out)


def _verdict(ok):
    if ok is None:
        return '<span class="skip">skipped</span>'
    return '<span class="pass">ok</span>' if ok else '<span class="fail">FAILED</span>'


def render_html(reports, repository, generated_at=None):
    """One self-contained HTML page: summary table, RTO/RPO chart, and every drill's checks."""
    esc = html.escape
    generated_at = generated_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    passed = sum(1 for r in reports if r.get("passed"))
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>walrus restore drills: %s</title>" % esc(repository), "<style>%s</style>" % _CSS, "</head><body>",
           "<h1>Restore drills of %s</h1>" % esc(repository),
           '<p class="meta">%d drill(s), %d passed, %d failed; generated %s by walrus drill-list.</p>'
           % (len(reports), passed, len(reports) - passed, esc(generated_at)),
           _chart(reports),
           "<h2>Drills</h2>",
           "<table><thead><tr><th>drill</th><th>started (UTC)</th><th>backup</th><th>result</th><th>RTO</th>"
           "<th>RPO</th><th>failed checks</th></tr></thead><tbody>"]
    for report in reports:
        out.append('<tr><td><a href="#%s">%s</a></td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            esc(report["id"], quote=True), esc(report["id"]), esc(str(report.get("started_at") or "-")),
            esc(str(report.get("backup") or "-")),
            '<span class="pass">passed</span>' if report.get("passed") else '<span class="fail">FAILED</span>',
            _seconds(report.get("rto_seconds")), _seconds(report.get("rpo_seconds")),
            esc(", ".join(failed_checks(report)) or "-")))
    out.append("</tbody></table>")
    for report in reversed(reports):  # newest first: the one a reader looks for
        out.append('<h2 id="%s">Drill %s: %s</h2>' % (
            esc(report["id"], quote=True), esc(report["id"]),
            '<span class="pass">passed</span>' if report.get("passed") else '<span class="fail">FAILED</span>'))
        target = ", ".join("%s=%s" % kv for kv in sorted((report.get("recovery") or {}).items())) or "end of the archive"
        out.append('<p class="meta">host %s; backup %s (requested %s, stopped %s); recovery target %s; %s to %s; '
                   'RTO %s (restore %s + replay %s), RPO %s; timeline %s, end LSN %s</p>' % tuple(esc(str(v)) for v in (
                       report.get("host") or "-", report.get("backup") or "-", report.get("requested_backup") or "-",
                       report.get("backup_stop_time") or "-", target, report.get("started_at") or "-",
                       report.get("finished_at") or "-", _seconds(report.get("rto_seconds")),
                       _seconds(report.get("restore_seconds")), _seconds(report.get("replay_seconds")),
                       _seconds(report.get("rpo_seconds")), report.get("timeline", "-"), report.get("end_lsn", "-"))))
        out.append("<table><thead><tr><th>check</th><th>result</th><th>seconds</th><th>detail</th></tr></thead><tbody>")
        for check in report.get("checks") or ():
            out.append('<tr><td>%s</td><td>%s</td><td>%s</td><td class="detail">%s</td></tr>' % (
                esc(str(check.get("name"))), _verdict(check.get("ok")), esc(str(check.get("seconds", "-"))),
                esc(str(check.get("detail", "")))))
        out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


__all__ = ["list_reports", "latest_report", "read_report", "summary", "render", "render_html", "epoch"]
