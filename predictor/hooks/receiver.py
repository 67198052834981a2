"""Append hook payloads to a JSON Lines file: a command-hook target for demos and tests.

Usage::

    python -m predictor.hooks.receiver --out FILE < payload.json

The payload is read from stdin and must be one JSON object. It is appended to ``FILE`` as
one line (parent folders are created). Invalid input exits with code 2 and a one-line
message on stderr, and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m predictor.hooks.receiver",
        description="Append the JSON payload read from stdin as one line to a file.",
    )
    parser.add_argument("--out", required=True, type=Path, help="JSON Lines file to append to")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Append the JSON object read from stdin to ``--out`` and return the exit code."""
    args = _parse_args(argv)
    text = sys.stdin.read()
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        sys.stderr.write(f"receiver: invalid JSON on stdin: {error}\n")
        return 2
    if not isinstance(payload, dict):
        sys.stderr.write(
            f"receiver: expected a JSON object on stdin, got {type(payload).__name__}\n"
        )
        return 2

    args.out.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(payload, sort_keys=True, separators=(",", ":")) + "\n"
    # One write call per payload, so concurrent receivers append whole lines.
    with args.out.open("a", encoding="utf-8") as file:
        file.write(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
