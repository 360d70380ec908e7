"""The README's promises that code can check: the tables of columns, the commands, the public names."""

from pathlib import Path

import regexplore as rx
from regexplore.model.frames import columns_markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_column_table_is_the_declared_one():
    start = README.index("<!-- frames-table:start -->")
    end = README.index("<!-- frames-table:end -->")
    assert README[start:end].split("\n", 1)[1].strip() == columns_markdown().strip()


def test_readme_commands_exist_and_ci_runs_the_test_command():
    assert "bash .ci/setup && bash .ci/test" in README
    assert "bash .ci/setup && .venv/bin/regexplore demo" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/setup" in ci and "bash .ci/test" in ci


def test_public_names_are_documented():
    for name in ("parse_reference", "Registry", "InvalidReference", "DigestMismatch", "UnsafeLayer"):
        assert name in rx.__all__ and name in README
