"""Every Python example in docs/ and the README runs as written (one namespace per page)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _run_examples(page: Path, workdir: Path, monkeypatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert blocks, f"{page.name} has no python example"
    monkeypatch.chdir(workdir)  # examples may write runs/
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)  # noqa: S102 - our own docs


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_examples_run(page, tmp_path, monkeypatch, capsys):
    _run_examples(page, tmp_path, monkeypatch)


@pytest.mark.slow  # the README trains the default forecaster (about 2 minutes)
def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    _run_examples(ROOT / "README.md", tmp_path, monkeypatch)
