"""A cold start's import cost: `import app`, and the runtime's first build, against the floor.

The floor is what no Chalice app on boto3 and pydantic can avoid: importing boto3, pydantic and
chalice and creating the two clients (DynamoDB, SQS). Three figures are set against it:

- `import app` alone, the whole process timed from outside, start-up included (the measure the
  goal was set in: what a function's init pays, its runtime being built on first use), from
  bytecode, as `make package` ships chalicelib (checked-hash .pyc files beside the sources);
- the same from source: what every cold start paid when the zip held no bytecode, since Lambda's
  /var/task is read-only and Python cannot keep what it compiles there;
- importing app.py and building the runtime, whose clients are the same two, timed inside the
  interpreter (its start-up not counted): all a function pays before its first request is served.

Each runs in a copy of app.py and chalicelib made for it (with and without bytecode), so that what
the working tree's __pycache__ holds does not count. Wall and CPU time (a child's CPU from its
rusage), the programs interleaved so that the machine's load falls on all alike, and the median
kept; the ratio is the point, not the milliseconds.

    python -m tools.bench.coldstart [--runs 15]
"""

from __future__ import annotations

import argparse
import compileall
import os
import py_compile
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from local.config import PROJECT_DIR, load_config
from local.launcher import clean_environment

# The goal for app / floor (issue 23): within 15 % of what any such app pays.
GOAL = 1.15

FLOOR = """
import time
started, cpu = time.perf_counter(), time.process_time()
import boto3, chalice, pydantic
session = boto3.session.Session()
session.client("dynamodb"), session.client("sqs")
print(time.perf_counter() - started, time.process_time() - cpu)
"""

APP = """
import time
started, cpu = time.perf_counter(), time.process_time()
import app
from chalicelib.runtime import get_runtime
get_runtime()
{first}
print(time.perf_counter() - started, time.process_time() - cpu)
"""

# Timed inside the interpreter: (name, program, which copy of the app it runs in). A consumer's
# function imports the consumer with its first batch, the API's the publish path with its first request.
PROGRAMS = [
    ("floor", FLOOR, "bytecode"),
    ("app", APP.format(first=""), "bytecode"),
    ("consumer", APP.format(first="import chalicelib.consume.consumer"), "bytecode"),
    ("api", APP.format(first="import chalicelib.publish.api"), "bytecode"),
]
# Timed from outside, start-up included: the floor as above, and the import alone from each copy.
PROCESSES = [
    ("process floor", FLOOR, "bytecode"),
    ("process import", "import app", "bytecode"),
    ("process import from source", "import app", "source"),
]


def _environment() -> dict[str, str]:
    """The local stage's environment, as a function's process has it before it imports the app.

    Nothing writes bytecode: the copy without it stays without it, as a read-only /var/task does.
    """
    config = load_config(clean_environment({}), stage="local")
    return clean_environment(config.process_environment()) | {"PYTHONDONTWRITEBYTECODE": "1"}


def app_copies(root: Path) -> dict[str, Path]:
    """Two copies of what the zip holds of the app (app.py and chalicelib): one compiled as
    `make package` compiles it, one without bytecode."""
    copies = {}
    for name in ("source", "bytecode"):
        copy = root / name
        copy.mkdir()
        shutil.copy2(PROJECT_DIR / "app.py", copy / "app.py")
        shutil.copytree(PROJECT_DIR / "chalicelib", copy / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
        copies[name] = copy
    # As `make package` compiles it: chalicelib only, since `chalice package` zips app.py without its bytecode.
    hashed = py_compile.PycInvalidationMode.CHECKED_HASH
    if not compileall.compile_dir(copies["bytecode"] / "chalicelib", quiet=1, invalidation_mode=hashed):
        raise RuntimeError("chalicelib did not compile")
    return copies


def seconds_of(program: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """How long `program` takes in a fresh interpreter, from its first statement to its print: wall and CPU."""
    done = subprocess.run([sys.executable, "-c", program], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def process_seconds(program: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """How long a fresh interpreter running `program` takes from outside, start-up included: wall and CPU."""
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-c", program], env=env, cwd=cwd, capture_output=True, check=True)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(runs: int) -> dict[str, Any]:
    """`runs` timings of each program, interleaved (which goes first alternates), and their medians."""
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="coldstart-") as root:
        copies = app_copies(Path(root))
        timed = [(name, program, seconds_of, copies[copy]) for name, program, copy in PROGRAMS]
        timed += [(name, program, process_seconds, copies[copy]) for name, program, copy in PROCESSES]
        for _, program, timer, cwd in timed:  # the first run of each fills the disk cache
            timer(program, env, cwd)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _, _ in timed}
        for run in range(runs):
            for name, program, timer, cwd in timed if run % 2 == 0 else list(reversed(timed)):
                samples[name].append(timer(program, env, cwd))
    # On a shared machine the wall time also counts the waits for a core; the CPU time does not.
    wall = {name: statistics.median(s[0] for s in values) for name, values in samples.items()}
    cpu = {name: statistics.median(s[1] for s in values) for name, values in samples.items()}
    return {
        "runs": runs,
        "load_average": os.getloadavg(),
        **_compared(wall, cpu, "process floor", "process import", "import_"),
        **_compared(wall, cpu, "process floor", "process import from source", "source_"),
        **_compared(wall, cpu, "floor", "app", ""),
        **_compared(wall, cpu, "floor", "consumer", "consumer_"),
        **_compared(wall, cpu, "floor", "api", "api_"),
    }


def _compared(wall: dict[str, float], cpu: dict[str, float], floor: str, app: str, prefix: str) -> dict[str, float]:
    """The floor's and the app's medians (ms) and the app's ratio to the floor, wall and CPU."""
    figures = {}
    for kind, seconds in (("", wall), ("cpu_", cpu)):
        figures[f"{prefix}floor_{kind}ms"] = seconds[floor] * 1000
        figures[f"{prefix}app_{kind}ms"] = seconds[app] * 1000
        figures[f"{prefix}{kind}ratio"] = seconds[app] / seconds[floor]
    return figures


def render(figures: dict[str, Any]) -> str:
    load = ", ".join(f"{value:.2f}" for value in figures["load_average"])
    verdict = "within" if figures["import_ratio"] <= GOAL else "over"  # judged on the wall time
    return "\n".join(
        [
            f"cold start, median of {figures['runs']} interleaved runs (load average {load}):",
            "  whole process, start-up included                        wall        CPU",
            f"  floor (import boto3, pydantic, chalice; two clients)  {figures['import_floor_ms']:7.1f} ms"
            f" {figures['import_floor_cpu_ms']:7.1f} ms",
            f"  import app, from bytecode (as packaged)               {figures['import_app_ms']:7.1f} ms"
            f" {figures['import_app_cpu_ms']:7.1f} ms",
            f"  import app / floor                                    {figures['import_ratio']:7.2f}x"
            f"   {figures['import_cpu_ratio']:7.2f}x   ({verdict} the goal of {GOAL:.2f}x)",
            f"  import app, from source (a zip without bytecode)      {figures['source_app_ms']:7.1f} ms"
            f" {figures['source_app_cpu_ms']:7.1f} ms",
            f"  import app from source / floor                        {figures['source_ratio']:7.2f}x"
            f"   {figures['source_cpu_ratio']:7.2f}x",
            "  inside the interpreter, to the first request",
            f"  floor (import boto3, pydantic, chalice; two clients)  {figures['floor_ms']:7.1f} ms"
            f" {figures['floor_cpu_ms']:7.1f} ms",
            f"  app   (import app.py; build the runtime)              {figures['app_ms']:7.1f} ms"
            f" {figures['app_cpu_ms']:7.1f} ms",
            f"  app / floor                                           {figures['ratio']:7.2f}x"
            f"   {figures['cpu_ratio']:7.2f}x",
            f"  the consumer's function, to its first batch / floor   {figures['consumer_ratio']:7.2f}x"
            f"   {figures['consumer_cpu_ratio']:7.2f}x",
            f"  the API's function, to its first publish / floor      {figures['api_ratio']:7.2f}x"
            f"   {figures['api_cpu_ratio']:7.2f}x",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="timings of each program")
    args = parser.parse_args(argv)
    print(render(measure(args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
