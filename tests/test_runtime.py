"""lstmkit.runtime: the allocator setting the command line applies for faster CPU training."""

from __future__ import annotations

import platform
import sys

import pytest

from lstmkit import cli, runtime


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_keep_freed_memory_applies_on_glibc():
    assert runtime.keep_freed_memory() is True


@pytest.mark.parametrize("env,calls", [(None, 1), ("0", 0)], ids=["default", "opt-out"])
def test_the_command_line_keeps_freed_memory_unless_told_not_to(env, calls, monkeypatch,
                                                                 capsys):
    seen = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: seen.append(1) or True)
    if env is None:
        monkeypatch.delenv("LSTMKIT_KEEP_MEMORY", raising=False)
    else:
        monkeypatch.setenv("LSTMKIT_KEEP_MEMORY", env)
    assert cli.main(["forecast", "evaluate", "/nonexistent-run", "--data", "/nonexistent.csv"]) != 0
    assert len(seen) == calls
