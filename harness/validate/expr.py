"""The small expression language of baselines: ``"mib > limit_mib"``, ``"limit"``, ``"count + 1"``.

Parsed with ``ast`` and evaluated node by node: names, numbers, + - * /,
comparisons, and/or/not; nothing else is accepted, so a baseline file can
never run code.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class BaselineError(ValueError):
    """The baseline file is malformed; str() is the one line shown."""


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne}


@dataclass(frozen=True)
class Expr:
    """A small arithmetic/comparison expression over param names (``"mib > limit_mib"``, ``"limit"``).

    Parsed with ``ast`` and evaluated node by node: names, numbers, + - * /,
    comparisons, and/or/not; nothing else is accepted.
    """

    text: str
    tree: ast.Expression

    @classmethod
    def parse(cls, text: str, where: str) -> Expr:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as e:
            raise BaselineError(f"{where}: cannot parse {text!r}: {e.msg}") from e
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Expression, ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare,
                                     ast.BoolOp, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, *_BINOPS,
                                     *_CMPOPS)):
                raise BaselineError(f"{where}: {text!r}: only param names, numbers, + - * /, comparisons "
                                    f"and and/or/not are allowed")
            if isinstance(node, ast.Constant) and (isinstance(node.value, bool)
                                                   or not isinstance(node.value, (int, float))):
                raise BaselineError(f"{where}: {text!r}: only numeric constants are allowed")
        return cls(text, tree)

    def names(self) -> set[str]:
        return {n.id for n in ast.walk(self.tree) if isinstance(n, ast.Name)}

    def __call__(self, env: Mapping[str, float]) -> Any:
        return self._eval(self.tree.body, env)

    def _eval(self, node: ast.AST, env: Mapping[str, float]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise KeyError(node.id)
            return env[node.id]
        if isinstance(node, ast.BinOp):
            return _BINOPS[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env)
            return -v if isinstance(node.op, ast.USub) else not v
        if isinstance(node, ast.BoolOp):
            vals = (self._eval(v, env) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, env)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        raise TypeError(type(node).__name__)  # unreachable: parse() rejected it
