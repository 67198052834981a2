"""Load benchmark of ``GET /v1/risk/{component}`` against a bare FastAPI endpoint.

Builds (or reuses) a risk store of 10,000 components with 30 days of hourly scores and
serves it with the predictor app. A second process, with the same uvicorn settings,
serves a FastAPI app whose only route returns a fixed JSON body. wrk loads the two
servers in alternating rounds at 32 connections from its own process, requesting
random components through a Lua script, and the script prints one JSON line:

    {"predictor": {"rps", "p50_ms", "p99_ms", ...}, "bare": {...}, "ratio": ...}

with ratio = predictor rps / bare rps. Needs ``wrk`` (Debian package ``wrk``).

    python benchmarks/api_load.py [--store PATH] [--duration 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.api_store import build_store, component_name  # noqa: E402

TOKEN = "benchmark-token"
CONNECTIONS = 32
THREADS = 2

LUA = """
math.randomseed(os.time())
local components = {components}
wrk.headers["Authorization"] = "Bearer {token}"

request = function()
  local name = string.format("gpu-node-%05d", math.random(0, components - 1))
  return wrk.format("GET", "/v1/risk/" .. name)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "RESULT {\\"requests\\": %d, \\"seconds\\": %.3f, \\"p50_ms\\": %.3f, "
    .. "\\"p90_ms\\": %.3f, \\"p99_ms\\": %.3f, \\"max_ms\\": %.3f, \\"errors\\": %d, "
    .. "\\"non_2xx\\": %d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    errors, summary.errors.status))
end
"""


def serve(kind: str, port: int, store: Path) -> None:
    """Run one server in this process until it is terminated."""
    import uvicorn
    from fastapi import FastAPI

    if kind == "predictor":
        from predictor.api import create_app
        from predictor.config import load_settings

        home = Path(tempfile.mkdtemp(prefix="api-load-home-"))
        environ = {
            "PREDICTOR_HOME": str(home),
            "PREDICTOR_STORE_URL": f"sqlite:///{store}",
            "PREDICTOR_API_TOKENS": TOKEN,
        }
        app = create_app(load_settings(environ=environ))
    else:
        app = FastAPI()
        body = {
            "component": "gpu-node-00000",
            "group": "pool-0",
            "scored_at": "2024-05-01T10:00:00Z",
            "risk": 0.42,
            "level": "normal",
        }

        @app.get("/v1/risk/{component}")
        async def fixed(component: str) -> dict:
            return body

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(kind: str, store: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--port", str(port), "--store", str(store)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            response = httpx.get(
                f"{url}/v1/risk/{component_name(1)}",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        response.raise_for_status()
        return process, url
    process.terminate()
    raise RuntimeError(f"{kind} server did not respond on {url} within 60 s")


def _wrk(url: str, script: Path, seconds: int) -> dict:
    command = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    return result


def measure(store: Path, script: Path, seconds: int, rounds: int) -> dict[str, dict]:
    """Start both servers, warm them up, and load them with wrk in alternating rounds.

    Alternating spreads the changing load of a shared machine over both servers, and
    each server's figures are from its round with the median throughput.
    """
    servers = {kind: _start(kind, store) for kind in ("predictor", "bare")}
    try:
        for _, url in servers.values():
            _wrk(url, script, 3)
        runs: dict[str, list[dict]] = {kind: [] for kind in servers}
        for _ in range(rounds):
            for kind, (_, url) in servers.items():
                runs[kind].append(_wrk(url, script, seconds))
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    medians = {}
    for kind, results in runs.items():
        ordered = sorted(results, key=lambda result: result["rps"])
        medians[kind] = {**ordered[len(ordered) // 2], "rounds_rps": [r["rps"] for r in results]}
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="benchmark store to reuse or create")
    parser.add_argument("--components", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="wrk runs per server, alternating (default: 3)"
    )
    parser.add_argument("--serve", choices=("predictor", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        serve(args.serve, args.port, args.store)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found; install it with `apt-get install -y wrk`")

    workdir = Path(tempfile.mkdtemp(prefix="api-load-"))
    store = args.store or workdir / "risk.db"
    if not store.exists():
        started = time.perf_counter()
        end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        rows = build_store(store, args.components, args.days, end=end)
        print(
            f"built {store}: {rows} rows in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    script = workdir / "random_component.lua"
    script.write_text(
        LUA.replace("{components}", str(args.components)).replace("{token}", TOKEN),
        encoding="utf-8",
    )

    results = measure(store, script, args.duration, args.rounds)
    predictor, bare = results["predictor"], results["bare"]
    summary = {
        "predictor": predictor,
        "bare": bare,
        "ratio": round(predictor["rps"] / bare["rps"], 3),
        "connections": CONNECTIONS,
        "components": args.components,
        "days": args.days,
    }
    print(json.dumps(summary))
    if args.store is None:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
