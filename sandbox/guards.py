"""The guards RestrictedPython calls, and the builtins skill code gets.

Attribute access is allowlisted by type: plain values expose their public methods (except
`str.format`, a known traversal route), exceptions expose `args` and their declared fields,
capability objects expose only the names they declare, and nothing else exposes anything.
"""

from __future__ import annotations

import builtins
import datetime as dt
import operator
from collections.abc import Callable
from typing import Any

from RestrictedPython import PrintCollector
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
)

from sandbox import errors

MAX_RANGE = 1_000_000
MAX_REPEAT_CHARS = 10_000_000
MAX_POW_BITS = 100_000
MAX_PRINTED_CHARS = 64 * 1024

_PLAIN_TYPES = (str, bytes, int, float, bool, list, dict, tuple, set, frozenset, type(None))
_VALUE_TYPES = (dt.datetime, dt.date, dt.time, dt.timedelta, dt.timezone)
_REFUSED_ON_PLAIN = frozenset({"format", "format_map", "mro"})
_EXCEPTION_FIELDS = frozenset({"args", "message", "error_type", "step_id", "retry_after"})


class Capability:
    """An object handed to skill code that exposes only the attribute names in `exposed`."""

    exposed: frozenset[str] = frozenset()


def guarded_getattr(obj: Any, name: str, default: Any = None, *has_default: Any) -> Any:
    if not isinstance(name, str) or name.startswith("_"):
        raise AttributeError(f"attribute {name!r} is not allowed in skills")
    if _attribute_allowed(obj, name):
        return getattr(obj, name, default) if has_default else getattr(obj, name)
    raise AttributeError(f"attribute {name!r} of {type(obj).__name__} is not available in skills")


def _attribute_allowed(obj: Any, name: str) -> bool:
    if isinstance(obj, Capability):
        return name in type(obj).exposed
    if isinstance(obj, BaseException):
        return name in _EXCEPTION_FIELDS
    if isinstance(obj, _PLAIN_TYPES):
        return name not in _REFUSED_ON_PLAIN
    return isinstance(obj, _VALUE_TYPES)


def guarded_getitem(obj: Any, key: Any) -> Any:
    if isinstance(key, str) and key.startswith("_") and not isinstance(obj, dict):
        raise KeyError(key)
    return obj[key]


def guarded_getiter(obj: Any) -> Any:
    return iter(obj)


def safe_range(*args: int) -> range:
    span = range(*args)
    if len(span) > MAX_RANGE:
        raise ValueError(f"range of {len(span)} items is over the limit of {MAX_RANGE}")
    return span


def safe_pow(base: Any, exponent: Any, modulo: Any = None) -> Any:
    big_int_power = modulo is None and isinstance(base, int) and isinstance(exponent, int)
    if big_int_power and abs(base) > 1 and exponent * max(1, abs(base).bit_length()) > MAX_POW_BITS:
        raise ValueError("pow result would be too large")
    return pow(base, exponent) if modulo is None else pow(base, exponent, modulo)


def checked_mult(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        repeated = isinstance(seq, str | bytes | list | tuple) and isinstance(count, int)
        if repeated and len(seq) * count > MAX_REPEAT_CHARS:
            raise ValueError("repetition result would be too large")
    return operator.mul(left, right)


def checked_lshift(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > MAX_POW_BITS:
        raise ValueError("shift result would be too large")
    return operator.lshift(left, right)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.add,
    "-=": operator.sub,
    "*=": checked_mult,
    "/=": operator.truediv,
    "//=": operator.floordiv,
    "%=": operator.mod,
    "**=": safe_pow,
    "<<=": checked_lshift,
    "|=": operator.or_,
    "&=": operator.and_,
    "^=": operator.xor,
}


def inplace_var(op: str, left: Any, right: Any) -> Any:
    try:
        return _INPLACE[op](left, right)
    except KeyError:
        raise SyntaxError(f"operator {op} is not allowed") from None


def _guarded_apply(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return function(*args, **kwargs)


_ALLOWED_BUILTINS = [
    "None",
    "True",
    "False",
    "abs",
    "all",
    "any",
    "bool",
    "callable",
    "chr",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "len",
    "list",
    "map",
    "max",
    "min",
    "oct",
    "ord",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RuntimeError",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
]


def skill_builtins() -> dict[str, Any]:
    table = {name: getattr(builtins, name) for name in _ALLOWED_BUILTINS}
    table.update(
        range=safe_range,
        pow=safe_pow,
        getattr=guarded_getattr,
        hasattr=lambda obj, name: _attribute_allowed(obj, name) and hasattr(obj, name),
        NonRetriableError=errors.NonRetriableError,
        RetryAfterError=errors.RetryAfterError,
        StepError=errors.StepError,
    )
    return table


class BoundedPrintCollector(PrintCollector):
    """`print` in skill code: collected for `printed`, and capped, so it cannot fill memory."""

    def __init__(self, _getattr_: Any = None) -> None:
        super().__init__(_getattr_)
        self.room = MAX_PRINTED_CHARS

    def write(self, text: str) -> None:
        kept = str(text)[: max(self.room, 0)]
        self.room -= len(kept)
        if kept:
            self.txt.append(kept)


def restricted_globals() -> dict[str, Any]:
    """The names RestrictedPython's rewritten code calls into, bound to our guards."""
    return {
        "__builtins__": skill_builtins(),
        "__name__": "skill",
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": inplace_var,
        "_apply_": _guarded_apply,
        "_print_": BoundedPrintCollector,
        "_mult_": checked_mult,
        "_pow_": safe_pow,
        "_lshift_": checked_lshift,
    }
