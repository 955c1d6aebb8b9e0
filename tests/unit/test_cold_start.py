"""What a cold start imports: every function imports app.py, and each should pay only for what it uses."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imported inside the routes, the queue handlers or the tick that use them, never by `import app`.
LAZY = {
    "chalicelib.chains",
    "chalicelib.consume.attempt",
    "chalicelib.consume.consumer",
    "chalicelib.consume.heartbeat",
    "chalicelib.consume.terminal",
    "chalicelib.openapi",
    "chalicelib.operate.operations",
    "chalicelib.operate.listing",
    "chalicelib.operate.task_types",
    "chalicelib.operate.views",
    "chalicelib.operate.schedule_stats",
    "chalicelib.query",
    "chalicelib.publish.answers",
    "chalicelib.publish.batch",
    "chalicelib.schedules.routes",
    "chalicelib.schedules.engine",
    "chalicelib.schedules.store",
    "chalicelib.schedules.record",
    "chalicelib.schedules.definition",
    "chalicelib.workflows.service",
    "chalicelib.workflows.fan_in",
    "chalicelib.workflows.store",
    "chalicelib.workflows.definition",
    "chalicelib.tasks.view",
    "chalicelib.tick.ticker",
}
# Libraries the functions do without: settings are a plain pydantic model over os.environ.
UNUSED = {"pydantic_settings", "argparse", "asyncio"}


def modules_after(program: str) -> set[str]:
    """The modules a fresh interpreter holds after running `program` in the project."""
    done = subprocess.run(
        [sys.executable, "-c", f"{program}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_app_leaves_the_consumer_operator_surface_schedules_and_openapi_unimported() -> None:
    loaded = modules_after("import app")
    assert "chalicelib.runtime" in loaded  # the probe sees what app.py does import
    assert loaded & LAZY == set()
    assert loaded & UNUSED == set()


def test_every_import_inside_a_route_or_handler_resolves() -> None:
    # A lazy import that names a moved or renamed module would fail only at its route's first request.
    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    lazy = [
        node
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom)
    ]
    assert {node.module for node in lazy} >= {
        "chalicelib.openapi",
        "chalicelib.operate",
        "chalicelib.tick",
        "chalicelib.consume.consumer",
    }
    for node in lazy:
        module = importlib.import_module(str(node.module))
        for alias in node.names:
            assert hasattr(module, alias.name) or importlib.import_module(f"{node.module}.{alias.name}"), alias.name


def test_every_follow_up_names_a_publisher_that_imports_and_publishes() -> None:
    # The follow-ups are imported by name when a task first wants one (chalicelib/consume/terminal.py).
    from chalicelib.consume.terminal import FOLLOW_UPS

    assert len(FOLLOW_UPS) == 3
    for follow_up in FOLLOW_UPS:
        module, _, name = follow_up.publisher.partition(":")
        assert callable(getattr(importlib.import_module(module), name)().publish), follow_up.publisher
