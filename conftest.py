"""Every Python code block of README.md and the docs runs as written (sybil), in the
README's test command. A block that needs a GPU or a cluster is preceded by a skip
comment that says why. Blocks of one page share a namespace, top to bottom."""

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser as MarkdownPython
from sybil.parsers.myst import SkipParser as MarkdownSkip
from sybil.parsers.rest import PythonCodeBlockParser as RestPython
from sybil.parsers.rest import SkipParser as RestSkip

collect_ignore = ["docs/conf.py", "docs/_build", "docs/auto_examples", "docs/generated",
                  "benchmarks", "examples"]

pytest_collect_file = (
    Sybil(parsers=[MarkdownPython(), MarkdownSkip()], patterns=["README.md", "docs/*.md"])
    + Sybil(parsers=[RestPython(), RestSkip()], patterns=["docs/*.rst"])
).pytest()
