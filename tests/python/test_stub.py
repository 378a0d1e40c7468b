# The extension's .pyi names what the module has: every class, function, method and property.
import ast
import os

import stagelog
from stagelog import _stagelog


def test_every_name_in_the_stub_exists():
    path = os.path.join(os.path.dirname(stagelog.__file__), "_stagelog.pyi")
    tree = ast.parse(open(path, encoding="utf-8").read())
    checked = 0
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            assert hasattr(_stagelog, node.name), node.name
            checked += 1
        elif isinstance(node, ast.ClassDef):
            cls = getattr(_stagelog, node.name)
            for item in node.body:
                name = getattr(item, "name", None) or getattr(getattr(item, "target", None),
                                                              "id", None)
                if name:
                    assert hasattr(cls, name), f"{node.name}.{name}"
                    checked += 1
    assert checked >= 75
