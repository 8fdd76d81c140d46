#!/usr/bin/env python3
"""Plots the throughput benchmarks' results as an SVG, with the Python standard library only.

Reads criterion's results under target/criterion (each benchmark's new/benchmark.json for its
group, function and throughput, and new/estimates.json for its time per iteration) and draws
throughput in bytes per second against message size, both on log scales, one line per
implementation: one panel for the in-memory groups of benches/core.rs (transport/<size>) and
one per runtime for benches/loopback.rs (loopback/<runtime>/<size>). A panel without results
is left out. The time per iteration is criterion's own estimate: the slope of its linear
regression when it made one, otherwise the mean. Throughput reported in messages is turned
into bytes with the message size that the group's name ends with.

Usage, from the repository root after the benchmarks have run:

    python3 benches/plot.py                      # writes docs/throughput.svg
    python3 benches/plot.py --criterion DIR --output FILE
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent

# Implementations in legend order, with their colours and dash patterns.
STYLES = {
    "ringwire": ("#d62728", None),
    "raw": ("#7f7f7f", None),
    "ldc": ("#1f77b4", None),
    "handwritten": ("#2ca02c", None),
    "memcpy": ("#9467bd", "6 4"),
}

# Panels in order: the group prefix whose results they show, and their title.
PANELS = [
    ("transport", "In memory (benches/core.rs)"),
    ("loopback/tokio", "Loopback TCP, tokio"),
    ("loopback/async-std", "Loopback TCP, async-std"),
    ("loopback/smol", "Loopback TCP, smol"),
]

SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024}

PANEL_WIDTH = 460
PANEL_HEIGHT = 330
MARGIN_LEFT = 78
MARGIN_RIGHT = 18
MARGIN_TOP = 34
MARGIN_BOTTOM = 52
TITLE_HEIGHT = 40
LEGEND_HEIGHT = 34


def parse_size(text):
    """The size in bytes that a group name's last part gives, such as 64B or 122KiB."""
    match = re.fullmatch(r"(\d+)(B|KiB|MiB)", text)
    if not match:
        return None
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def format_size(size):
    for unit in ("MiB", "KiB"):
        if size >= SIZE_UNITS[unit] and size % SIZE_UNITS[unit] == 0:
            return f"{size // SIZE_UNITS[unit]} {unit}"
    return f"{size} B"


def format_rate(rate):
    for value, unit in ((1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")):
        if rate >= value:
            return f"{rate / value:g} {unit}"
    return f"{rate:g} B/s"


def load_results(criterion_dir):
    """Maps each group prefix to {function: [(size, bytes per second)]}."""
    results = {}
    for benchmark_file in sorted(criterion_dir.glob("*/*/new/benchmark.json")):
        estimates_file = benchmark_file.with_name("estimates.json")
        if not estimates_file.exists():
            continue
        benchmark = json.loads(benchmark_file.read_text())
        estimates = json.loads(estimates_file.read_text())

        prefix, _, size_text = benchmark["group_id"].rpartition("/")
        size = parse_size(size_text)
        throughput = benchmark.get("throughput") or {}
        if size is None or not prefix:
            continue
        if "Bytes" in throughput:
            bytes_per_iteration = throughput["Bytes"]
        elif "Elements" in throughput:
            bytes_per_iteration = throughput["Elements"] * size
        else:
            continue

        estimate = estimates.get("slope") or estimates["mean"]
        nanoseconds = estimate["point_estimate"]
        rate = bytes_per_iteration / (nanoseconds * 1e-9)
        function = benchmark["function_id"]
        results.setdefault(prefix, {}).setdefault(function, []).append((size, rate))

    for functions in results.values():
        for points in functions.values():
            points.sort()
    return results


def log_scale(low, high, start, end):
    """A function from a value in [low, high] to a coordinate in [start, end], on a log scale."""
    span = math.log10(high) - math.log10(low)
    return lambda value: start + (math.log10(value) - math.log10(low)) / span * (end - start)


def draw_panel(out, x0, y0, title, functions, sizes, rate_range):
    left = x0 + MARGIN_LEFT
    right = x0 + PANEL_WIDTH - MARGIN_RIGHT
    top = y0 + MARGIN_TOP
    bottom = y0 + PANEL_HEIGHT - MARGIN_BOTTOM

    # A little room either side of the smallest and largest size.
    x = log_scale(min(sizes) / 1.6, max(sizes) * 1.6, left, right)
    low_decade, high_decade = rate_range
    y = log_scale(10.0**low_decade, 10.0**high_decade, bottom, top)

    out.append(
        f'<text x="{(left + right) / 2}" y="{y0 + 20}" class="panel-title">{escape(title)}</text>'
    )
    out.append(
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" '
        'class="frame"/>'
    )

    for decade in range(low_decade, high_decade + 1):
        ty = y(10.0**decade)
        out.append(f'<line x1="{left}" y1="{ty:.1f}" x2="{right}" y2="{ty:.1f}" class="grid"/>')
        out.append(
            f'<text x="{left - 6}" y="{ty + 4:.1f}" class="tick" text-anchor="end">'
            f"{format_rate(10.0**decade)}</text>"
        )
    for size in sizes:
        tx = x(size)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" class="grid"/>')
        out.append(
            f'<text x="{tx:.1f}" y="{bottom + 16}" class="tick" text-anchor="middle">'
            f"{format_size(size)}</text>"
        )

    out.append(
        f'<text x="{(left + right) / 2}" y="{bottom + 38}" class="axis-label">'
        "message size (log scale)</text>"
    )
    label_x = x0 + 16
    label_y = (top + bottom) / 2
    out.append(
        f'<text x="{label_x}" y="{label_y}" class="axis-label" '
        f'transform="rotate(-90 {label_x} {label_y})">throughput, bytes per second (log scale)'
        "</text>"
    )

    # ringwire last, so that its line is drawn over the others.
    for function in sorted(STYLES, key=lambda name: name == "ringwire"):
        points = functions.get(function)
        if not points:
            continue
        colour, dash = STYLES[function]
        width = 2.6 if function == "ringwire" else 1.8
        coordinates = " ".join(f"{x(size):.1f},{y(rate):.1f}" for size, rate in points)
        dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline points="{coordinates}" fill="none" stroke="{colour}" '
            f'stroke-width="{width}"{dash_attribute}/>'
        )
        for size, rate in points:
            out.append(
                f'<circle cx="{x(size):.1f}" cy="{y(rate):.1f}" r="3" fill="{colour}">'
                f"<title>{escape(function)}, {format_size(size)}: "
                f"{rate / 1e9:.3g} GB/s</title></circle>"
            )


def render(results):
    panels = [(prefix, title) for prefix, title in PANELS if prefix in results]
    if not panels:
        return None

    all_rates = [
        rate
        for prefix, _ in panels
        for points in results[prefix].values()
        for _, rate in points
    ]
    # One rate axis for every panel, so that panels compare at a glance.
    rate_range = (
        math.floor(math.log10(min(all_rates))),
        math.ceil(math.log10(max(all_rates))),
    )
    present = [f for f in STYLES if any(f in results[p] for p, _ in panels)]

    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    width = columns * PANEL_WIDTH
    height = TITLE_HEIGHT + LEGEND_HEIGHT + rows * PANEL_HEIGHT

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif">',
        "<style>"
        ".title{font-size:17px;font-weight:bold;text-anchor:middle}"
        ".panel-title{font-size:14px;font-weight:bold;text-anchor:middle}"
        ".tick{font-size:11px;fill:#333}"
        ".axis-label{font-size:12px;fill:#333;text-anchor:middle}"
        ".legend{font-size:13px}"
        ".frame{fill:none;stroke:#444;stroke-width:1}"
        ".grid{stroke:#ddd;stroke-width:1}"
        "</style>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="26" class="title">'
        "Throughput by message size: ringwire and the alternatives</text>",
    ]

    # The legend, in one row under the title: a sample line, then the name (about 8 pixels
    # a letter), then a gap.
    item_widths = [34 + 8 * len(function) + 26 for function in present]
    lx = (width - sum(item_widths)) / 2
    legend_y = TITLE_HEIGHT + LEGEND_HEIGHT / 2
    for function, item_width in zip(present, item_widths):
        colour, dash = STYLES[function]
        dash_attribute = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{lx}" y1="{legend_y}" x2="{lx + 28}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2.6"{dash_attribute}/>'
        )
        out.append(
            f'<text x="{lx + 34}" y="{legend_y + 4}" class="legend">{escape(function)}</text>'
        )
        lx += item_width

    for index, (prefix, title) in enumerate(panels):
        x0 = (index % columns) * PANEL_WIDTH
        y0 = TITLE_HEIGHT + LEGEND_HEIGHT + (index // columns) * PANEL_HEIGHT
        functions = results[prefix]
        sizes = sorted({size for points in functions.values() for size, _ in points})
        draw_panel(out, x0, y0, title, functions, sizes, rate_range)

    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--criterion",
        type=Path,
        default=ROOT / "target" / "criterion",
        help="criterion's output directory (default: target/criterion)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "throughput.svg",
        help="the SVG to write (default: docs/throughput.svg)",
    )
    args = parser.parse_args()

    results = load_results(args.criterion)
    svg = render(results)
    if svg is None:
        sys.exit(f"no transport/ or loopback/ results under {args.criterion}: run the benches")
    args.output.write_text(svg)

    for prefix, _ in PANELS:
        for function, points in sorted(results.get(prefix, {}).items()):
            rates = ", ".join(f"{format_size(s)} {r / 1e9:.3g} GB/s" for s, r in points)
            print(f"{prefix}/{function}: {rates}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
