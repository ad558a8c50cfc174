"""What ``pip install .`` ships: every package of the source tree.

twistd imports the installed copy, so a package missing from ``setup.py``
works in the checkout and breaks every installed program (a plugin whose
module cannot be imported vanishes from twistd).
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _declared_packages() -> set[str]:
    tree = ast.parse(open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "packages":
            return {ast.literal_eval(element) for element in node.value.elts}
    raise AssertionError("setup.py declares no packages")


def _source_packages() -> set[str]:
    found = set()
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "jeisson")):
        if "__init__.py" in files:
            found.add(os.path.relpath(folder, ROOT).replace(os.sep, "."))
    return found


def test_setup_declares_every_package_of_the_source_tree():
    missing = _source_packages() - _declared_packages()
    assert not missing, f"setup.py packages is missing {sorted(missing)}"
