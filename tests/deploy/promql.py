"""Just enough PromQL lexing to list the metric names an expression reads."""

from __future__ import annotations

import re

# Functions, aggregations, keywords and modifiers: identifiers that are never metric names.
_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(?!\s*\()")
_NUMBER_SUFFIX = re.compile(r"\b\d+(?:\.\d+)?[smhdwy]?\b")


def metric_names(expr: str) -> set[str]:
    """Metric names selected by ``expr`` (PromQL), ignoring labels, strings and functions."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _NUMBER_SUFFIX.sub("", text)
    return {m for m in _IDENT.findall(text) if m.lower() not in _KEYWORDS}
