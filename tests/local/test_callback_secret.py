"""`make run` signs callbacks with the CALLBACK_SIGNING_SECRET it is given, or makes one and says where it is."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from local import runner
from local.config import load_config


def test_a_run_without_a_secret_makes_one_for_every_piece_and_writes_it_for_this_user_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALLBACK_SIGNING_SECRET", raising=False)
    monkeypatch.setattr(runner, "CALLBACK_SECRET_DIRECTORY", tmp_path)
    config = load_config({"PORT": "8123"})
    written = tmp_path / "taskproc-local-8123-callback-secret"
    env = runner.child_environment(config)
    assert len(env["CALLBACK_SIGNING_SECRET"]) == 64
    assert written.read_text() == env["CALLBACK_SIGNING_SECRET"]
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert str(written) in runner.callback_secret_line(config)
    assert runner.child_environment(config)["CALLBACK_SIGNING_SECRET"] != env["CALLBACK_SIGNING_SECRET"]


def test_a_run_given_a_secret_keeps_it_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBACK_SIGNING_SECRET", "given-" * 8)
    monkeypatch.setattr(runner, "CALLBACK_SECRET_DIRECTORY", tmp_path)
    assert runner.child_environment(load_config({}))["CALLBACK_SIGNING_SECRET"] == "given-" * 8
    assert list(tmp_path.iterdir()) == []
