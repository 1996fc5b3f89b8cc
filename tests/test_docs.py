"""The quick start's output has one source: docs/quickstart_output.txt, which the
getting-started page includes and whose text the README repeats (GitHub cannot
include files). ``python docs/record_quickstart.py`` rewrites both."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- quickstart output: docs/quickstart_output.txt -->"


def _readme_block():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(re.escape(MARKER) + r"\n```text\n(.*?)```", readme, re.DOTALL)
    assert len(blocks) == 1, f"README.md needs one ```text block right after {MARKER}"
    return blocks[0]


def test_readme_quickstart_output_is_the_recorded_file():
    recorded = (ROOT / "docs" / "quickstart_output.txt").read_text()
    assert _readme_block() == recorded, (
        "README.md's quick-start output differs from docs/quickstart_output.txt: "
        "run python docs/record_quickstart.py"
    )


def test_recorded_output_names_machine_torch_and_load():
    lines = (ROOT / "docs" / "quickstart_output.txt").read_text().splitlines()
    assert lines[0].startswith("digits: ")
    assert re.search(r"\d+ cores, load average [\d.]+ before the fit, [\d.]+ after$",
                     lines[1]), lines[1]
    assert re.match(r"torch \S+, \d+ threads?, ", lines[2]), lines[2]


def test_getting_started_includes_the_recorded_file():
    page = (ROOT / "docs" / "getting_started.rst").read_text()
    assert ".. literalinclude:: quickstart_output.txt" in page
