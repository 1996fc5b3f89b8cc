"""Record the quick start's output once, for the README and the docs.

    python docs/record_quickstart.py

runs ``python examples/quickstart.py`` (whose output names the machine, its
load, torch and the thread count), writes the output to
docs/quickstart_output.txt, which docs/getting_started.rst includes, and
puts the same text into README.md's block after the line
``<!-- quickstart output: docs/quickstart_output.txt -->`` (GitHub cannot
include files). tests/test_docs.py fails when the two differ.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "quickstart_output.txt"
README = ROOT / "README.md"
# The marker line, then a fenced block whose body is the recorded output.
README_BLOCK = re.compile(
    r"(<!-- quickstart output: docs/quickstart_output\.txt -->\n```text\n)"
    r"(.*?)(```)",
    re.DOTALL,
)


def main():
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    output = run.stdout
    readme = README.read_text()
    if len(README_BLOCK.findall(readme)) != 1:
        sys.exit("README.md: expected one quick-start output block after the "
                 "marker line; nothing written.")
    OUTPUT.write_text(output)
    README.write_text(README_BLOCK.sub(lambda m: m[1] + output + m[3], readme))
    print(output, end="")
    print(f"written to {OUTPUT.relative_to(ROOT)} and {README.name}")


if __name__ == "__main__":
    main()
