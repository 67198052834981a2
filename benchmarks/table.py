"""Print the fleet benchmark results as a Markdown table.

Reads the JSON lines that ``benchmarks/run.py`` printed (one per stage and fleet size)
and writes one row per line, in the order given, with the figures the stage reported:

    python benchmarks/table.py results.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: The rate each stage reports, and its unit in the table.
RATES = {
    "ingest": ("rows_per_s", "rows/s"),
    "features": ("rows_per_s", "rows/s"),
    "training": ("components_per_s", "components/s"),
    "scoring": ("components_per_s", "components/s"),
    "forecast": ("series_per_s", "series/s"),
    "hooks": ("events_per_s", "events/s"),
    "compact": ("rows_per_s", "rows/s"),
}


def _row(result: dict) -> str:
    field, unit = RATES.get(result["stage"], ("", ""))
    rate = f"{result[field]:,.0f} {unit}" if field in result else ""
    per_thousand = result["wall_s"] / result["components"] * 1000
    peer = ""
    if "ratio" in result:
        peer = f"{result['ratio']:g}x"
    return (
        f"| {result['stage']} | {result['components']:,} | {result['wall_s']:.3f} | "
        f"{per_thousand:.3f} | {rate} | {result['peak_rss_mib']:,.0f} | {peer} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the table of the JSON lines in the given file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="file of JSON lines from benchmarks/run.py")
    args = parser.parse_args(argv)
    try:
        lines = args.results.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        parser.error(f"{args.results}: {error.strerror}")
    print(
        "| stage | components | wall s | s per 1,000 components | rate | peak RSS MiB "
        "| faster than peer |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            print(_row(json.loads(line)))
        except (json.JSONDecodeError, KeyError) as error:
            parser.error(f"{args.results}, line {number}: expected a run.py result line ({error})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
