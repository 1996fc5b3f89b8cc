"""Sphinx configuration: numpydoc API pages, a sphinx-gallery built from examples/,
and the Markdown pages of docs/ through MyST. Builds offline (no intersphinx).

    sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

import os
import re
import sys
from pathlib import Path

import skinfomax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Figures are drawn off screen, and each example is timed on one torch thread
# per fit, as a 2-core CI machine runs them.
os.environ.setdefault("MPLBACKEND", "Agg")

project = "skinfomax"
author = "the skinfomax developers"
copyright = "2026, the skinfomax developers"
release = version = skinfomax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "screenshots", "generated/*.examples", "**/*.ipynb"]
templates_path = ["_templates"]

# API pages: one per public name, numpydoc renders the docstrings.
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()

# Offline build: no intersphinx inventories, so names from other projects
# (numpy, scikit-learn, torch, dask, matplotlib) cannot be resolved. Broken
# references to skinfomax's own names still fail the nitpicky build.
nitpick_ignore_regex = [
    ("py:.*", r"(numpy|np|sklearn|torch|dask|distributed|dask_ml|matplotlib|joblib|pandas)\..*"),
    # A fitted attribute, listed in the class's Attributes section, which
    # numpydoc renders as text rather than as an object a reference can reach.
    ("py:attr", r"info_mean_"),
]

# MyST: $$ maths, heading anchors for links such as (#gpu-nvidia-h100).
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3



def _resolve_in_package(app, env, node, contnode):
    """Resolve ``InfoMaxVAETransformer.reconstruct``-style names written in other
    skinfomax modules (e.g. skinfomax.plotting) to the object documented under
    ``skinfomax.``; any other unresolved name stays a nitpicky error."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target or target.startswith("skinfomax."):
        return None
    domain = env.get_domain("py")
    matches = [name for name in domain.objects if name.endswith("." + target)
               and name.startswith("skinfomax.")]
    if len(matches) != 1:
        return None
    node["reftarget"] = matches[0]
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                               matches[0], node, contnode)


_TYPE_LINE = re.compile(r"^\s*\w[\w, ]* : ")
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=[,)\s]|$)")


def _escape_type_underscores(app, what, name, obj, options, lines):
    """In numpydoc "name : type" lines, escape a trailing underscore such as the
    one of ``(n_features_in_,)``: reST would read it as a link to a target."""
    for i, line in enumerate(lines):
        match = _TYPE_LINE.match(line)
        if match:
            lines[i] = match.group(0) + _TRAILING_UNDERSCORE.sub(r"\1\\_", line[match.end():])


def setup(app):
    app.connect("missing-reference", _resolve_in_package)
    # Before numpydoc (priority 500) turns "name : type" lines into field lists.
    app.connect("autodoc-process-docstring", _escape_type_underscores, priority=100)


sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # The command-line scripts are documented on the getting-started and images pages.
    "ignore_pattern": r"(?<!plot_)(quickstart|images_mnist)\.py$",
    "within_subsection_order": "FileNameSortKey",
    "backreferences_dir": None,
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skinfomax {version}"
html_static_path = ["_static"]
html_css_files = ["skinfomax.css"]
html_theme_options = {
    # Five top-bar links fit beside the search box at 1,280 px; the API
    # reference is the fifth (index.rst orders the toctree), the rest sit
    # under "More".
    "header_links_before_dropdown": 5,
    "navigation_with_keys": False,
    "show_toc_level": 2,
    # Gallery examples give the right-hand column to the code, whose 79-column
    # lines then fit unwrapped at 1,280 px (page names, not a second pattern,
    # which the theme would warn about).
    "secondary_sidebar_items": {
        "**": ["page-toc"],
        **{f"auto_examples/{path.stem}": [] for path in (ROOT / "examples").glob("plot_*.py")},
    },
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"install": [], "getting_started": []}

# "On this page" lists a class's methods as fit(), not as the full
# InfoMaxVAETransformer.fit(), which the right-hand column would cut off.
toc_object_entries_show_parents = "hide"

# Types are documented by numpydoc in the docstrings; the expanded numpy
# ArrayLike union would swamp the signatures.
autodoc_typehints = "none"
