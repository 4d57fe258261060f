"""Renderings of a validation document: the terminal table, Markdown, a self-contained
HTML page with an accuracy-against-latency plot and a size chart, and JUnit XML.

The HTML page embeds its charts as inline SVG (drawn by matplotlib) and its style
inline, so it opens from disk or a CI artifact store with no network.
"""
from __future__ import annotations

import html
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from edgecnn.runtime import RUNNERS, Runner, runner_class

from edgecnn.runtime.bench import ROUNDS

from . import baseline, crosscheck, explain, outdir, pi_latency
from .columns import columns

# what the main table's columns mean, under it in every rendering
LEGEND = ("Accuracy is on the whole test split; Δ acc is in points against the fp32 reference model; agreement "
          "is top-1 agreement with it. Latency is batch 1 after warm-up; no outliers are dropped. vs fp32 is the "
          "p50 over the same format's fp32 p50 in this run: below 1 is faster, ! marks slower.")
# each source model (framework) its own marker fill in the plot: full, hollow, half, ...
MODEL_FILLS = ("full", "none", "left", "bottom", "right", "top")
PRECISION_COLOURS = {"fp32": "#1f77b4", "fp16": "#9467bd", "dynamic": "#2ca02c", "int8": "#ff7f0e"}


def _name(r: dict) -> str:
    return f"{r.get('model') or r.get('source_framework') or '?'} {r['format']} {r['precision']}"


def _status(r: dict, width: int = 70) -> str:
    if r["status"] == "fail":
        failed = [g["gate"] for g in r.get("gates", []) if not g["passed"]]
        return ("FAIL " + (", ".join(failed) if failed else r.get("reason", "")))[:width]
    if r["status"] in ("skipped", "error"):
        text = f"{r['status']}: {r.get('reason', '')}" + (f" ({r['hint']})" if r.get("hint") else "")
        return text[:width]
    return r["status"] + (", throttled" if (r.get("device_state") or {}).get("throttled") else "")


def _with_interval(value: float | None, ci) -> str:
    """98.20% [97.9–98.5]: the value and its Wilson 95 % interval, in %."""
    if value is None:
        return "-"
    return f"{value:.2%}" + (f" [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]" if ci else "")


def rows(doc: dict) -> list[tuple[str, ...]]:
    """The main table. With targets other than `local` it gains a target column and the
    agreement with the local run; emulated rows show no latency (it is not a device's).
    Accuracy and agreement carry their Wilson 95 % intervals."""
    multi = any(r["target"] != "local" for r in doc["results"])
    shown = [pi_latency.headline(r.get("pi_estimate")) for r in doc["results"]]
    boards = list(dict.fromkeys(h[0] for h in shown if h))
    header = ("model", *(("target",) if multi else ()), "format", "precision", "size", "accuracy", "Δ acc",
              "agreement", *(("vs local",) if multi else ()), "p50 ms", "p90 ms",
              *(pi_latency.column(b) for b in boards), "vs fp32", "status")
    out = [header]
    for r in doc["results"]:
        est = pi_latency.headline(r.get("pi_estimate"))
        ran = r.get("accuracy") is not None
        drop = r.get("accuracy_drop")
        lat = r.get("latency_ms")
        host = r.get("host_agreement")
        out.append((
            r.get("model") or "?", *((r["target"],) if multi else ()),
            r["format"], r["precision"],
            f"{r['size_bytes'] / 1024:,.0f} KB" if r.get("size_bytes") else "-",
            _with_interval(r.get("accuracy"), r.get("accuracy_ci")) if ran else "-",
            "-" if drop is None else f"{-drop + 0.0:+.2f}".replace("-0.00", "+0.00"),
            _with_interval(r.get("agreement"), r.get("agreement_ci")),
            *(("-" if host is None else f"{host:.2%}",) if multi else ()),
            f"{lat['p50']:.3f}" if lat else ("emulated" if r.get("emulated") and ran else "-"),
            f"{lat['p90']:.3f}" if lat else ("emulated" if r.get("emulated") and ran else "-"),
            *(pi_latency.cell(est[1]) if est and est[0] == b else "-" for b in boards),
            f"{r['latency_vs_fp32']:.2f}x" + (" !" if r["latency_vs_fp32"] > 1 else "") if r.get("latency_vs_fp32")
            else "-",
            _status(r)))
    return out


def table(doc: dict) -> str:
    return "\n".join(columns(rows(doc)))


def _target_line(doc: dict) -> str:
    lines = []
    for t in doc.get("targets") or [doc["target"]]:
        kind = "emulated" if t.get("emulated") else "native"
        extra = f", first {t['samples']} test images" if t.get("samples") else ""
        int8 = t.get("int8") or {}
        if int8.get("int8_accumulation"):
            extra += f", int8 sums: {int8['int8_accumulation']}"
        lines.append(f"{t['name']} ({kind} {t.get('machine', '?')}, {t.get('cpu', '?')}, "
                     f"{t.get('threads', 1)} thread(s){extra})")
    return "; ".join(lines)


def estimates_line(doc: dict) -> str | None:
    """What the estimate columns mean, once per board shown; None when there are none."""
    seen = {}
    for r in doc["results"]:
        est = r.get("pi_estimate")
        h = pi_latency.headline(est)
        if h and h[0] not in seen:
            clocks = list(est["boards"][h[0]]["clocks"])
            seen[h[0]] = (f"{pi_latency.column(h[0])} at {clocks[0]} GHz"
                          + (f" ({', '.join(clocks[1:])} GHz in the JSON)" if clocks[1:] else "")
                          + f", from counted instructions ({est['model']}), band ±{h[1]['band']:.0%} "
                            + (f"(the calibration's largest leave-one-out error, {est['band_from']}'s: one "
                               f"published entry for this core has none)" if est.get("band_from")
                               else "(the calibration's largest leave-one-out error)"))
    skipped = next((r["pi_estimate_skipped"] for r in doc["results"] if r.get("pi_estimate_skipped")), None)
    if skipped:
        seen["-"] = f"none: {skipped}"
    failed = next((r for r in doc["results"] if (r.get("pi_count") or {}).get("error")), None)
    if failed:
        seen["!"] = f"{_name(failed)} on {failed['target']}: counted, but no estimate: {failed['pi_count']['error']}"
    estimates = [r["pi_estimate"] for r in doc["results"] if r.get("pi_estimate")]
    uncalibrated = next((e for e in estimates if not e["calibrated"]), None)
    if uncalibrated:
        seen["?"] = f"instructions were counted, but not made milliseconds: {uncalibrated['why_uncalibrated']}"
    caveat = next((e["caveat"] for e in estimates if e.get("caveat")), None)
    if caveat:
        seen["~"] = caveat
    return "; ".join(seen.values()) or None


def differences(doc: dict) -> list[str]:
    """One line per artifact and machine whose top-1 answers differ from the local run's,
    naming the machine that deviates from the fp32 reference."""
    return [f"{_name(r)}: {crosscheck.summary(r)}" for r in doc["results"] if r.get("host_deviation")]


def baseline_note(doc: dict) -> str:
    b = doc["baseline"]
    return (f"Against the run of {b.get('created') or '?'}: {b['matched']} artifacts matched. Accuracy fails when "
            f"McNemar's exact one-sided test finds the new run worse at p < {b['alpha']}; the p50 (median of "
            f"{ROUNDS} rounds) fails above the old one x (1 + {b['tolerance_pct']:g} % + the larger round spread).")


def warnings(doc: dict) -> list[str]:
    out = [f"{_name(r)} on {r['target']}: {w}" for r in doc["results"] for w in r.get("warnings", [])]
    for r in doc["results"]:
        state = r.get("device_state") or {}
        if state.get("throttled"):
            before, after = state["before"], state["after"]
            out.append(f"{_name(r)} on {r['target']}: measured while throttled ({state['throttled']}); governor "
                       f"{after.get('governor')}, {after.get('cur_mhz')} of {after.get('max_mhz')} MHz, "
                       f"{before.get('temp_c')} -> {after.get('temp_c')} C")
    return out


def scored_line(doc: dict) -> str:
    """How many test images were scored, of which dataset, and where they came from."""
    seen = {}
    for r in doc["results"]:
        if r.get("samples"):
            key = (r["dataset"], r.get("test_images_from"))
            seen[key] = max(seen.get(key, 0), r["samples"])
    return "; ".join(f"{n:,} images of {name}" + (f" ({src})" if src else "") for (name, src), n in seen.items()) \
        or "none"


def _gates_line(doc: dict) -> str:
    from .gates import describe
    scopes = {"": doc["gates"], **doc.get("gate_tables", {})}
    return "; ".join((f"{scope}: " if scope else "") + ", ".join(describe(k, v) for k, v in limits.items())
                     for scope, limits in scopes.items() if limits) or "none"


def _verdict(doc: dict) -> str:
    counts = {}
    for r in doc["results"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return ", ".join(f"{n} {s}" for s, n in counts.items())


# -- Markdown ------------------------------------------------------------------------
def _md_table(rs: list[tuple]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rs]
    return "\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
                     + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def _detail_rows(doc: dict) -> list[tuple[str, ...]]:
    out = [("artifact", "runtime", "import ms", "load ms", "first ms", "p99 ms", "mean ms", "std ms", "runs",
            "p50 with I/O ms", "peak RSS MB",
            "max abs diff", "eval s")]
    for r in doc["results"]:
        if r["status"] not in ("pass", "fail") or r.get("latency_ms") is None:
            continue  # an error row may carry half a measurement: not shown as if whole
        lat = r["latency_ms"]
        out.append((_name(r), r.get("runtime_version") or r.get("runtime", "?"), _num(r.get("import_ms"), ".0f"),
                    _num(r.get("load_ms"), ".1f"), _num(r.get("first_ms"), ".2f"), _num(lat.get("p99"), ".3f"),
                    _num(lat.get("mean"), ".3f"), _num(lat.get("std"), ".3f"), str(r.get("runs", "-")),
                    _num((r.get("infer_ms") or {}).get("p50"), ".3f"), _num(r.get("peak_rss_mb"), ".0f"),
                    _num(r.get("max_abs_diff"), ".2e"), _num(r.get("eval_seconds"), ".2f")))
    return out


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _class_rows(doc: dict) -> list[tuple[str, ...]]:
    ran = [r for r in doc["results"] if r.get("per_class_accuracy")]
    if not ran:
        return []
    n = max(len(r["per_class_accuracy"]) for r in ran)
    names = {tuple(r.get("classes") or ()) for r in ran}
    named = len(names) == 1 and len(next(iter(names))) == n
    out = [("artifact", *(next(iter(names)) if named else map(str, range(n))))]
    for r in ran:
        out.append((_name(r), *("-" if a is None else f"{a:.1%}" for a in r["per_class_accuracy"])))
    return out


def markdown(doc: dict) -> str:
    parts = ["# edgecnn validation", "",
             f"- target: {_target_line(doc)}",
             f"- scored: {scored_line(doc)}",
             f"- gates: {_gates_line(doc)}",
             f"- verdict: **{'PASS' if doc['passed'] else 'FAIL'}** ({_verdict(doc)})",
             f"- made by edgecnn {doc['edgecnn']} at {doc['created']}", "",
             LEGEND, "",
             _md_table(rows(doc)), ""]
    detail = _detail_rows(doc)
    if len(detail) > 1:
        parts += ["## Latency, memory and fidelity", "", _md_table(detail), ""]
    classes = _class_rows(doc)
    if classes:
        parts += ["## Accuracy per class", "", _md_table(classes), ""]
    failed = [(r, g) for r in doc["results"] for g in r.get("gates", []) if not g["passed"]]
    if failed:
        parts += ["## Failed gates", ""] + [f"- {_name(r)}: {g['message']}" for r, g in failed] + [""]
    if differences(doc):
        parts += ["## Answers that differ between machines", ""] + [f"- {d}" for d in differences(doc)] + [""]
    if warnings(doc):
        parts += ["## Warnings", ""] + [f"- {w}" for w in warnings(doc)] + [""]
    if doc.get("baseline"):
        parts += ["## Against the baseline", "", baseline_note(doc), "", _md_table(baseline.rows(doc)), ""]
    for ex in doc.get("explain", []):
        parts += [f"## Where int8 loses accuracy, layer by layer: {ex['folder']}", ""]
        if "reason" in ex:
            parts += [f"Not explained: {ex['reason']}", ""]
            continue
        for title, table_rows, notes in explain.sections(ex):
            parts += [f"### {title}", ""] + ([_md_table(table_rows), ""] if table_rows else []) + [
                f"- {n}" for n in notes] + [""]
    return "\n".join(parts)


# -- charts --------------------------------------------------------------------------
def _svg(fig) -> str:
    import matplotlib.pyplot as plt
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: it is inlined
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "edgecnn", "font.size": 10})
    return plt


def _runner(fmt: str):
    """The format's runner class (its title and marker), or the base class's defaults for
    a format this edgecnn does not know (results read from another version)."""
    return runner_class(fmt) if fmt in RUNNERS else Runner


def accuracy_latency_svg(doc: dict) -> str | None:
    ran = [r for r in doc["results"] if r.get("latency_ms") and r.get("accuracy") is not None]
    if not ran:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    models = list(dict.fromkeys(r.get("model") for r in ran))
    fill = {m: MODEL_FILLS[i % len(MODEL_FILLS)] for i, m in enumerate(models)}
    for r in ran:
        colour = PRECISION_COLOURS.get(r["precision"], "grey")
        ax.plot(r["latency_ms"]["p50"], 100 * r["accuracy"], linestyle="", markersize=9, markeredgewidth=1.8,
                marker=_runner(r["format"]).marker, color=colour, fillstyle=fill[r.get("model")],
                markerfacecoloralt="white", zorder=3)
    ax.set_xlim(0, max(r["latency_ms"]["p50"] for r in ran) * 1.1)
    ax.set_xlabel("p50 latency, batch 1 (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Accuracy against latency on {', '.join(sorted({r['target'] for r in ran}))}")
    ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], linestyle="", marker=_runner(f).marker, color="black", label=_runner(f).title or f)
               for f in dict.fromkeys(r["format"] for r in ran)]
    handles += [Line2D([], [], linestyle="", marker="o", color=c, label=p)
                for p, c in PRECISION_COLOURS.items() if any(r["precision"] == p for r in ran)]
    if len(models) > 1:
        handles += [Line2D([], [], linestyle="", marker="o", color="black", fillstyle=fill[m],
                           markerfacecoloralt="white", label=f"from {m}") for m in models]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    return _svg(fig)


def pi_estimates_svg(doc: dict) -> str | None:
    """Each estimated Pi latency with its band, and the lower bound of the core's peak."""
    shown = [(r, pi_latency.headline(r.get("pi_estimate"))) for r in doc["results"]]
    shown = [(r, h) for r, h in shown if h]
    if not shown:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(shown) + 1.2))
    for i, (r, (board, at)) in enumerate(shown):
        lo, hi = at["band_ms"]
        ax.errorbar(at["ms"], i, xerr=[[at["ms"] - lo], [hi - at["ms"]]], fmt=_runner(r["format"]).marker,
                    color=PRECISION_COLOURS.get(r["precision"], "grey"), capsize=3, markersize=7)
        if at["lower_bound_ms"] is not None:
            ax.plot(at["lower_bound_ms"], i, marker="|", color="black", markersize=12)
    ax.set_yticks(range(len(shown)), [f"{_name(r)} on {pi_latency.BOARDS[h[0]][1]} at {h[1]['ghz']:g} GHz"
                                      for r, h in shown])
    ax.invert_yaxis()
    ax.set_xlim(0, max(h[1]["band_ms"][1] for _, h in shown) * 1.1)
    ax.set_xlabel("estimated latency, batch 1, 1 thread (ms); bar: calibration band; |: peak-rate lower bound")
    ax.set_title("Estimated Raspberry Pi latency, from counted instructions")
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig)


def size_svg(doc: dict) -> str | None:
    sized = [r for r in doc["results"] if r.get("size_bytes")]
    if not sized:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(sized) + 1.0))
    labels = [_name(r) for r in sized]
    kb = [r["size_bytes"] / 1024 for r in sized]
    ax.barh(range(len(sized)), kb, color=[PRECISION_COLOURS.get(r["precision"], "grey") for r in sized])
    for i, v in enumerate(kb):
        ax.text(v, i, f" {v:,.0f} KB", va="center", fontsize=8)
    ax.set_yticks(range(len(sized)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, max(kb) * 1.18)
    ax.set_xlabel("file size (KB)")
    ax.set_title("Artifact size")
    ax.grid(True, axis="x", alpha=0.3)
    return _svg(fig)


# -- HTML ----------------------------------------------------------------------------
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
.table { overflow-x: auto; max-width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.45rem; text-align: right; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
th { background: #f4f4f4; } td:nth-child(-n+3), th:nth-child(-n+3) { text-align: left; }
td.status-pass { color: #177a2c; font-weight: 600; } td.status-fail, td.status-error { color: #b3261e; font-weight: 600; }
td.status-skipped { color: #8a6d00; }
td[class^="status-"], th:last-child { text-align: left; white-space: normal; }
.verdict-pass { color: #177a2c; } .verdict-fail { color: #b3261e; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.charts svg { max-width: 100%; height: auto; }
ul.meta { padding-left: 1.2rem; }
"""


def _html_table(rs: list[tuple], status_col: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rs[0])
    body = []
    for r in rs[1:]:
        cells = []
        for i, c in enumerate(r):
            cls = f' class="status-{c.split()[0].lower().rstrip(":")}"' if i == status_col and c else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def html_page(doc: dict) -> str:
    verdict = "PASS" if doc["passed"] else "FAIL"
    charts = [s for s in (accuracy_latency_svg(doc), pi_estimates_svg(doc), size_svg(doc)) if s]
    main = rows(doc)
    failed = [(r, g) for r in doc["results"] for g in r.get("gates", []) if not g["passed"]]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>edgecnn validation</title>", f"<style>{CSS}</style></head><body>",
        f'<h1>edgecnn validation: <span class="verdict-{verdict.lower()}">{verdict}</span></h1>',
        '<ul class="meta">',
        f"<li>target: {html.escape(_target_line(doc))}</li>",
        f"<li>scored: {html.escape(scored_line(doc))}</li>",
        f"<li>gates: {html.escape(_gates_line(doc))}</li>",
        f"<li>results: {html.escape(_verdict(doc))}</li>",
        f"<li>made by edgecnn {html.escape(doc['edgecnn'])} at {html.escape(doc['created'])}</li></ul>",
        f"<p>{html.escape(LEGEND)}</p>",
        _html_table(main, status_col=len(main[0]) - 1),
    ]
    if failed:
        parts.append("<h2>Failed gates</h2><ul>" + "".join(
            f"<li>{html.escape(_name(r))}: {html.escape(g['message'])}</li>" for r, g in failed) + "</ul>")
    if differences(doc):
        parts.append("<h2>Answers that differ between machines</h2><ul>" + "".join(
            f"<li>{html.escape(d)}</li>" for d in differences(doc)) + "</ul>")
    if warnings(doc):
        parts.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings(doc)) + "</ul>")
    if doc.get("baseline"):
        parts.append(f"<h2>Against the baseline</h2><p>{html.escape(baseline_note(doc))}</p>"
                     + _html_table(baseline.rows(doc)))
    if charts:
        parts.append('<h2>Accuracy, latency and size</h2><div class="charts">' + "".join(charts) + "</div>")
    detail = _detail_rows(doc)
    if len(detail) > 1:
        parts += ["<h2>Latency, memory and fidelity</h2>", _html_table(detail)]
    classes = _class_rows(doc)
    if classes:
        parts += ["<h2>Accuracy per class</h2>", _html_table(classes)]
    for ex in doc.get("explain", []):
        parts.append(f"<h2>Where int8 loses accuracy, layer by layer: {html.escape(ex['folder'])}</h2>")
        if "reason" in ex:
            parts.append(f"<p>Not explained: {html.escape(ex['reason'])}</p>")
            continue
        for title, table_rows, notes in explain.sections(ex):
            parts.append(f"<h3>{html.escape(title)}</h3>")
            if table_rows:
                parts.append(_html_table(table_rows))
            if notes:
                parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- JUnit ---------------------------------------------------------------------------
def junit(doc: dict) -> str:
    """One test case per artifact (it ran) and one per artifact and gate."""
    target = doc["target"]["name"]
    suite = ET.Element("testsuite", name=f"edgecnn validate on {target}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, name: str, seconds: float = 0.0):
        counts["tests"] += 1
        return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")

    for r in doc["results"]:
        cls = f"edgecnn.{target}.{re.sub(r'[^A-Za-z0-9_]+', '_', r.get('model') or 'model')}"
        label = f"{r['format']} {r['precision']}"
        tc = case(cls, f"{label} runs", float(r.get("eval_seconds") or 0.0))
        if r["status"] == "skipped":
            counts["skipped"] += 1
            ET.SubElement(tc, "skipped", message=f"{r.get('reason', '')} ({r.get('hint', '')})")
        elif r["status"] == "error":
            counts["errors"] += 1
            ET.SubElement(tc, "error", message=r.get("reason", ""), type="error")
        elif r.get("reason"):
            counts["failures"] += 1
            ET.SubElement(tc, "failure", message=r["reason"], type="export")
        ET.SubElement(tc, "system-out").text = r["artifact"]
        for g in r.get("gates", []):
            gc = case(cls, f"{label} {g['gate']}")
            props = ET.SubElement(gc, "properties")
            for key in ("value", "limit", "unit"):
                ET.SubElement(props, "property", name=key, value="" if g.get(key) is None else f"{g[key]}")
            ET.SubElement(gc, "system-out").text = g["message"]
            if not g["passed"]:
                counts["failures"] += 1
                ET.SubElement(gc, "failure", message=g["message"], type="gate")
    for k, v in counts.items():
        suite.set(k, str(v))
    root = ET.Element("testsuites", name="edgecnn", **{k: str(v) for k, v in counts.items()})
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(doc: dict, folder: Path) -> dict:
    """report.md, index.html and results.json in `folder`; other files there are left alone."""
    folder = Path(folder)
    files = {"html": folder / "index.html", "markdown": folder / "report.md", "json": folder / "results.json"}
    outdir.write_text_atomic(files["json"], json.dumps(doc, indent=2) + "\n")
    outdir.write_text_atomic(files["markdown"], markdown(doc))
    outdir.write_text_atomic(files["html"], html_page(doc))
    return {k: str(v) for k, v in files.items()}
