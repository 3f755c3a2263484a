"""The README's skill examples must stay valid skills."""

from __future__ import annotations

import re
from pathlib import Path

from sandbox.policy import compile_skill

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_skill_examples_compile_without_warnings() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    skills = [compile_skill(block) for block in blocks if block.startswith("def handler")]
    assert len(skills) >= 2  # the main example and the LLM step's
    assert skills[0].has_on_failure
    assert all(skill.warnings == () for skill in skills)
