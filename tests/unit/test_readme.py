"""The README's skill example must stay a valid skill."""

from __future__ import annotations

import re
from pathlib import Path

from sandbox.policy import compile_skill

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_skill_example_compiles_without_warnings() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [skill] = [block for block in blocks if block.startswith("def handler")]
    compiled = compile_skill(skill)
    assert compiled.has_on_failure
    assert compiled.warnings == ()
