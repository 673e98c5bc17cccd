"""The README's library example runs as written and its printed claims hold."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_library_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0] == "404"
    assert lines[1] == "(5, 5)"
    assert lines[2] == "[ True  True  True  True  True]"


def test_probes_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[1], "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["True", "True", "True True"]


def test_streamed_data_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[2], "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["True", "True"]


def test_parameter_blocks_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[3], "README.md", "exec"), {})
    assert out.getvalue().splitlines() == ["True", "['0', '2']", "(3,) True"]
