# stagelog.hash_output against seed 002's own function, copied here as the reference.
import hashlib
import json
import math

import pytest
import stagelog


def seed_hash_output(data):
    if isinstance(data, dict):
        data_str = json.dumps(data, sort_keys=True)
    else:
        data_str = str(data)
    return hashlib.sha256(data_str.encode()).hexdigest()[:16]


OBJECTS = [
    "", "hello", "héllo wörld", "日本語", "emoji 🚀", "quote \" and ' and \\", "tab\tnew\nline",
    "\x00\x7f", 0, 1, -7, 2**63, -(2**64) - 1, 10**40, True, False, None,
    0.0, -0.0, 1.5, 100.0, 1e16, 1e-5, 0.1 + 0.2, 1e300, float("inf"), float("-inf"),
    float("nan"), [], [1, 2, 3], ["a", 'b"c', None, True], [1.5, [2, [3]]], (1, "x"),
    [float("nan")], {"a": 1}, {}, {"b": 2, "a": 1}, {"nested": {"z": [1, {"y": None}]}},
    {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")},
    {"unicode": "naïve café 日本 🚀", "ctl": "\x01\x1f\x7f"}, {"list": [1, "two", 3.0]},
    {"é": 1, "e": 2, "z": 3, "A": 4}, {1: "int key", 2: "two"}, {"t": True, "f": False},
    {"big": 2**70, "neg": -5, "float": 2.5e-10}, {"tuple": (1, 2)}, {"empty": {}, "e2": []},
    {"slash": "a/b", "bs": "a\\b"}, {"deep": [[[[[]]]]]}, {"x": 1e16, "y": 123456789.123},
    {"s": "\u2028\u2029"}, {"surrogate_pair": "𝄞"}, {"k": [{"b": 1, "a": 2}]},
    {True: 1, False: 2}, {1.5: "float key"}, set(), frozenset({1}), b"bytes",
]


def test_at_least_fifty_objects():
    assert len(OBJECTS) >= 50


@pytest.mark.parametrize("obj", OBJECTS, ids=[repr(o)[:30] for o in OBJECTS])
def test_equals_the_seed_algorithm(obj):
    assert stagelog.hash_output(obj) == seed_hash_output(obj)


def test_errors_match_python():
    with pytest.raises(TypeError):
        seed_hash_output({"a": object()})
    with pytest.raises(TypeError, match="not JSON serializable"):
        stagelog.hash_output({"a": object()})
    with pytest.raises(TypeError):
        seed_hash_output({True: 1, None: 2})
    with pytest.raises(TypeError):
        stagelog.hash_output({True: 1, None: 2})  # sort_keys with keys Python cannot order
