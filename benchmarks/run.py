"""Run one fleet-scale benchmark stage and print its result as one JSON line.

Usage::

    python benchmarks/run.py --stage STAGE --components N [--data DIR] [--workdir DIR]

The stage's ``prepare`` runs in this process (untimed, cached under the work folder,
``benchmarks/.work/<stage>-<N>/`` by default). Its ``measure`` then runs in a fresh child
process, so ``peak_rss_mib`` is the peak resident memory of the measurement alone. The
JSON line contains ``stage``, ``components``, ``wall_s``, ``peak_rss_mib``, the stage's own
fields and ``machine``. Logs go to stderr. Bad arguments and a stage without a module
exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import NoReturn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.stages import StageContext  # noqa: E402

STAGES = ("ingest", "features", "training", "scoring", "forecast", "hooks", "compact")

logger = logging.getLogger("benchmarks.run")


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"run.py: error: {message}\n")


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {raw!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help=f"one of {', '.join(STAGES)}")
    parser.add_argument("--components", required=True, type=_positive_int)
    parser.add_argument("--data", type=Path, help="data folder with smd/ and asd/")
    parser.add_argument("--workdir", type=Path, help="cache folder of the stage")
    # Internal: run the stage's measure and write its fields to this file.
    parser.add_argument("--measure-into", type=Path, help=argparse.SUPPRESS)
    return parser


def default_data_dir() -> Path:
    """Return the full data sets' folder when present, else the repository's ``data/``.

    The folder is ``PREDICTOR_SHARED_DATA`` when set (as for the tests), else
    ``shared/data`` beside the repository.
    """
    configured = os.environ.get("PREDICTOR_SHARED_DATA")
    shared = Path(configured) if configured else REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else REPO / "data"


def _stage_module(parser: argparse.ArgumentParser, stage: str) -> ModuleType:
    if stage not in STAGES:
        parser.error(f"--stage: unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    path = REPO / "benchmarks" / "stages" / f"{stage}.py"
    if not path.is_file():
        parser.error(f"--stage: stage {stage!r} has no module yet; expected {path}")
    return importlib.import_module(f"benchmarks.stages.{stage}")


def machine() -> dict[str, object]:
    """Return the CPU count, CPU model and memory of this machine, from /proc."""
    model = platform.processor() or platform.machine()
    memory_mib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mib = round(int(line.split()[1]) / 1024)
                break
    except OSError as error:
        logger.warning(
            "machine: could not read /proc (%s); CPU model and memory are partial", error
        )
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "memory_mib": memory_mib}


def measured_peak_rss_mib() -> float:
    """Return this process's peak resident memory in MiB.

    Linux keeps ``getrusage``'s ``ru_maxrss`` across ``exec``, so a child started from a
    parent that had prepared a large fleet would report the parent's peak. ``VmHWM`` in
    ``/proc/self/status`` belongs to the running program only.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    # ru_maxrss is in KiB on Linux and in bytes on macOS; only Linux gets here without
    # /proc when /proc is not mounted.
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _measure_in_child(args: argparse.Namespace, ctx: StageContext) -> tuple[dict, float]:
    """Run the stage's measure in a fresh process; return its fields and peak RSS in MiB."""
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        result_path = Path(folder) / "measure.json"
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            f"--stage={args.stage}",
            f"--components={ctx.components}",
            f"--data={ctx.data_dir}",
            f"--workdir={ctx.workdir}",
            f"--measure-into={result_path}",
        ]
        # The child's stdout goes to stderr, so this process prints the only stdout line.
        child = subprocess.Popen(command, stdout=sys.stderr)
        _, status, _ = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(
                f"run.py: stage {args.stage!r} measure failed with exit status "
                f"{child.returncode}; see its log above"
            )
        fields = json.loads(result_path.read_text())
    return fields, fields.pop("peak_rss_mib")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark the arguments name; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    module = _stage_module(parser, args.stage)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    # The product logs a line per component or hook action at INFO; at fleet scale that
    # would bury the benchmark's own lines.
    logging.getLogger("predictor").setLevel(logging.WARNING)
    data_dir = (args.data or default_data_dir()).resolve()
    if not data_dir.is_dir():
        parser.error(f"--data: {data_dir} is not a folder")
    workdir = (
        args.workdir or REPO / "benchmarks" / ".work" / f"{args.stage}-{args.components}"
    ).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(workdir=workdir, components=args.components, data_dir=data_dir)

    if args.measure_into is not None:
        fields = module.measure(ctx)
        fields["peak_rss_mib"] = measured_peak_rss_mib()
        args.measure_into.write_text(json.dumps(fields))
        return 0

    logger.info(
        "stage %s: %d components, data %s, work folder %s",
        args.stage,
        args.components,
        data_dir,
        workdir,
    )
    try:
        module.prepare(ctx)
    except (ValueError, FileNotFoundError) as error:
        # The fleet generator rejects a data folder without source servers this way.
        parser.exit(2, f"run.py: stage {args.stage!r}: {error}\n")
    fields, peak_rss_mib = _measure_in_child(args, ctx)
    if "wall_s" not in fields:
        raise SystemExit(
            f"run.py: stage {args.stage!r} measure returned no 'wall_s'; "
            f"got fields {sorted(fields)}"
        )
    result = {
        "stage": args.stage,
        "components": args.components,
        "wall_s": fields.pop("wall_s"),
        "peak_rss_mib": peak_rss_mib,
        **fields,
        "machine": machine(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
