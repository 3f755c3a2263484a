"""The skill language: what skill code may contain, checked before RestrictedPython compiles it.

Plain functions, lambdas, comprehensions, try/except and f-strings. No classes, generators,
imports, async, `global`/`nonlocal`, or names and attributes that start with `_`.
The shape of the code is checked before any recursive visitor sees it, so a pathological
expression cannot crash the host with RecursionError.
"""

from __future__ import annotations

import ast
import io
import re
import threading
import tokenize
from dataclasses import dataclass
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer, compile_restricted_exec

from sandbox.errors import CompileError

MAX_SOURCE_BYTES = 256 * 1024
MAX_AST_NODES = 50_000
MAX_NESTING = 60
MAX_OPERATORS_PER_STATEMENT = 1000
# CPython 3.11's AST conversion keeps its recursion depth in state shared by threads (gh-106905):
# two parses at once can fail with SystemError, so skills are parsed one at a time.
_PARSER = threading.Lock()
ENTRY_POINTS = ("handler", "on_failure")

_FORBIDDEN = {
    ast.ClassDef: "classes are not allowed in skills; use dicts and functions",
    ast.Import: "imports are not allowed; json, math, re, datetime and http are already available",
    ast.ImportFrom: "imports are not allowed; json, math, re, datetime and http are already available",
    ast.Global: "'global' is not allowed; pass values through step results",
    ast.Nonlocal: "'nonlocal' is not allowed",
    ast.Yield: "generators are not allowed",
    ast.YieldFrom: "generators are not allowed",
    ast.Await: "async code is not allowed; handlers are plain functions",
    ast.AsyncFunctionDef: "async functions are not allowed; define 'def handler(ctx, step)'",
    ast.AsyncFor: "async code is not allowed",
    ast.AsyncWith: "async code is not allowed",
    ast.TryStar: "'except*' is not allowed",
    ast.GeneratorExp: "generator expressions are not allowed; use a list comprehension",
}
_NEUTRAL_OPS = frozenset({"(", ")", "[", "]", "{", "}", ",", ":", ";", "="})
_WORD_OPS = frozenset({"and", "or", "not", "if", "else", "lambda", "in", "is"})


@dataclass(frozen=True)
class CompiledSkill:
    code: CodeType
    has_on_failure: bool
    warnings: tuple[str, ...]


# Binary operators whose result size the operands choose: routed through a bounded guard.
GUARDED_OPERATORS = {ast.Mult: "_mult_", ast.Pow: "_pow_", ast.LShift: "_lshift_"}


class SkillTransformer(RestrictingNodeTransformer):
    """RestrictedPython's transformer, plus `a * b`, `a ** b` and `a << b` as guard calls
    (RestrictedPython guards only their in-place forms), so `'a' * 10**10` is refused, not built."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node = self.node_contents_visit(node)
        guard = GUARDED_OPERATORS.get(type(node.op))
        if guard is None:
            return node
        call = ast.Call(func=ast.Name(guard, ast.Load()), args=[node.left, node.right], keywords=[])
        return ast.fix_missing_locations(ast.copy_location(call, node))


def compile_skill(source: str, filename: str = "<skill>") -> CompiledSkill:
    """Check and compile skill source; raises CompileError with line and column."""
    if not isinstance(source, str):
        raise CompileError("code must be a string")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise CompileError(f"code is over the limit of {MAX_SOURCE_BYTES} bytes")
    _check_bracket_depth(source)
    _check_operator_chains(source)
    with _PARSER:
        return _compile_checked(source, filename)


def _compile_checked(source: str, filename: str) -> CompiledSkill:
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise CompileError(f"SyntaxError: {exc.msg}", exc.lineno, exc.offset) from None
    except (RecursionError, MemoryError):
        raise CompileError("code is nested too deeply") from None
    _check_tree(tree)
    functions = _entry_points(tree)
    result = compile_restricted_exec(source, filename, policy=SkillTransformer)
    if result.errors:
        raise _restricted_error(result.errors[0])
    return CompiledSkill(
        code=result.code, has_on_failure="on_failure" in functions, warnings=tuple(_warnings(tree))
    )


def _check_bracket_depth(source: str) -> None:
    depth = deepest = 0
    for char in source:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    if deepest > MAX_NESTING:
        raise CompileError(f"code nests brackets {deepest} deep, over the limit of {MAX_NESTING}")


def _check_operator_chains(source: str) -> None:
    """Refuse a statement with thousands of operators before the parser sees it: CPython builds
    such chains recursively, and a RecursionError there corrupts the interpreter's parser state
    for every later parse in the process (3.11: "AST constructor recursion depth mismatch")."""
    count, line = 0, 1
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                count = 0
            elif (token.type == tokenize.OP and token.string not in _NEUTRAL_OPS) or (
                token.type == tokenize.NAME and token.string in _WORD_OPS
            ):
                count += 1
                line = token.start[0]
                if count > MAX_OPERATORS_PER_STATEMENT:
                    raise CompileError(
                        f"a statement has more than {MAX_OPERATORS_PER_STATEMENT} operators", line, 1
                    )
    except (tokenize.TokenError, SyntaxError):
        return  # the parser reports the syntax error with its position


def _check_tree(tree: ast.Module) -> None:
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # iterative on purpose: no recursion on attacker-shaped trees
        node, depth = stack.pop()
        count += 1
        if count > MAX_AST_NODES:
            raise CompileError(f"code has more than {MAX_AST_NODES} syntax nodes")
        if depth > MAX_NESTING * 3:
            raise CompileError("code is nested too deeply", *_position(node))
        reason = _FORBIDDEN.get(type(node))
        if reason is not None:
            raise CompileError(reason, *_position(node))
        name = _private_name(node)
        if name is not None:
            raise CompileError(f"names starting with '_' are not allowed: {name!r}", *_position(node))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _private_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name | ast.arg):
        name = node.id if isinstance(node, ast.Name) else node.arg
    elif isinstance(node, ast.Attribute):
        name = node.attr
    elif isinstance(node, ast.FunctionDef):
        name = node.name
    elif isinstance(node, ast.keyword):
        name = node.arg or ""
    else:
        return None
    return name if name.startswith("_") else None


def _entry_points(tree: ast.Module) -> set[str]:
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    handler = functions.get("handler")
    if handler is None:
        raise CompileError("the skill must define 'def handler(ctx, step)' at the top level", 1, 1)
    for name in ENTRY_POINTS:
        node = functions.get(name)
        if node is not None and len(node.args.args) != 2:
            raise CompileError(f"'{name}' must take two arguments: (ctx, step)", *_position(node))
    return {name for name in ENTRY_POINTS if name in functions}


def _warnings(tree: ast.Module) -> list[str]:
    """Mistakes that compile but break durable semantics, said so an agent can fix them."""
    found: list[tuple[int, str]] = []
    for function in tree.body:
        if not isinstance(function, ast.FunctionDef):
            continue
        for node in _outside_nested_functions(function):
            for capability in ("http", "runs"):
                if _is_call_on(node, capability):
                    found.append(
                        (
                            node.lineno,
                            f"line {node.lineno}: {capability} call outside step.run in "
                            f"'{function.name}': it would run again on every replay and is refused; "
                            "wrap it in step.run",
                        )
                    )
            if _is_call_on(node, "datetime", ("now", "utcnow", "today")):
                found.append(
                    (
                        node.lineno,
                        f"line {node.lineno}: reading the clock outside a step in '{function.name}' "
                        "changes on replay; use step.now(id)",
                    )
                )
    return [text for _, text in sorted(found)]


def _outside_nested_functions(function: ast.FunctionDef) -> list[ast.AST]:
    nodes: list[ast.AST] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.Lambda | ast.FunctionDef):
                stack.append(child)
    return nodes


def _is_call_on(node: ast.AST, module: str, attributes: tuple[str, ...] | None = None) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    target = node.func.value
    named = isinstance(target, ast.Name) and target.id == module
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        named = target.value.id == module  # datetime.datetime.now()
    return named and (attributes is None or node.func.attr in attributes)


def _position(node: ast.AST) -> tuple[int | None, int | None]:
    line = getattr(node, "lineno", None)
    column = getattr(node, "col_offset", None)
    return line, None if column is None else column + 1


def _restricted_error(message: str) -> CompileError:
    match = re.match(r"Line (\d+): (.*)", message)
    if match:
        return CompileError(match.group(2), int(match.group(1)), 1)
    return CompileError(message)
