# ruff: noqa: E501  (a table of attacks: one per line reads best)
"""Escape and denial-of-service attempts against the sandbox, one skill each.

Each attack, if it worked, would end by reading the host's secret file (`SECRET`, a path the
test puts in the source) or the engine's environment and returning what it read. `expect` says
how the attack must be stopped: refused at registration ("compile"), or the run "failed" with
an error that contains `error`, or the run "completed" having got nothing (its output is checked
for the canaries like every other attack's trace).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    name: str
    family: str
    code: str
    expect: str  # compile | failed | completed
    error: str = ""
    # Worker CPU for an attack that must meet another limit first (the suite's 2 s otherwise).
    cpu_seconds: float | None = None


def h(body: str) -> str:
    """A handler whose body is `body` (lines indented by four spaces)."""
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"def handler(ctx, step):\n{lines}\n"


A = Attack
ATTACKS = [
    # dunder and __subclasses__ walks ------------------------------------------------------
    A("subclasses-walk", "dunder", h("return ().__class__.__bases__[0].__subclasses__()"), "compile"),
    A("class-attribute", "dunder", h("return [].__class__"), "compile"),
    A("dunder-name", "dunder", h("return __builtins__"), "compile"),
    A("dunder-import", "dunder", h("os = __import__('os')\nreturn open(SECRET).read()"), "compile"),
    A("mro-attribute", "dunder", h("return ''.mro"), "failed", "not available"),
    A("func-globals", "dunder", h("f = lambda: 1\nreturn f.__globals__"), "compile"),
    A("underscore-subscript", "dunder", h("return ctx.event['data'].__class__"), "compile"),
    # computed getattr -----------------------------------------------------------------------
    A("getattr-dunder", "getattr", h("return getattr((), '_' + '_class__')"), "failed", "not allowed"),
    A(
        "getattr-subclasses",
        "getattr",
        h(
            "c = getattr(getattr((), '__cl' + 'ass__'), '__ba' + 'se__')\n"
            "return [s for s in getattr(c, '__subcl' + 'asses__')()]"
        ),
        "failed",
        "not allowed",
    ),
    A(
        "getattr-func-code",
        "getattr",
        h("return str(getattr(lambda: 1, 'func_code'))"),
        "failed",
        "not available",
    ),
    A("getattr-type-of", "getattr", h("return getattr(type(1), 'mro')()"), "failed", "type"),
    A("hasattr-probe", "getattr", h("return hasattr(step, '_host') or hasattr(step, 'host')"), "completed"),
    # format-string traversal --------------------------------------------------------------
    A("str-format-class", "format", h("return '{0.__class__.__mro__}'.format(1)"), "failed", "not available"),
    A("format-map", "format", h("return '{x.__class__}'.format_map({'x': 1})"), "failed", "not available"),
    A(
        "format-via-getattr",
        "format",
        h("return getattr('{0.__init__.__globals__}', 'format')(step)"),
        "failed",
        "not available",
    ),
    A("fstring-conversion", "format", h("return f'{step!r} {http!s} {ctx.log!r}'"), "completed"),
    A("format-builtin", "format", h("return format(step, '{0.__class__}')"), "failed", "format"),
    # generator, coroutine and traceback frames -------------------------------------------
    A("generator-frame", "frames", h("g = (x for x in [1])\nreturn g.gi_frame.f_back"), "compile"),
    A(
        "yield-frame",
        "frames",
        "def gen():\n    yield 1\n\ndef handler(ctx, step):\n    return list(gen())\n",
        "compile",
    ),
    A("async-coroutine", "frames", "async def handler(ctx, step):\n    return 1\n", "compile"),
    A(
        "traceback-frame",
        "frames",
        h("try:\n    1 / 0\nexcept Exception as e:\n    return str(e.__traceback__.tb_frame.f_globals)"),
        "compile",
    ),
    A(
        "traceback-getattr",
        "frames",
        h("try:\n    1 / 0\nexcept Exception as e:\n    return str(getattr(e, 'with_traceback'))"),
        "failed",
        "not available",
    ),
    A("except-star", "frames", h("try:\n    1 / 0\nexcept* ZeroDivisionError:\n    pass"), "compile"),
    # guard shadowing ------------------------------------------------------------------------
    A("shadow-getattr", "shadowing", h("_getattr_ = lambda o, n: 1\nreturn ()._x"), "compile"),
    A(
        "positional-only-guard",
        "shadowing",
        "def f(_getattr_=None, /):\n    return 1\n\ndef handler(ctx, step):\n    return f()\n",
        "compile",
    ),
    A(
        "shadow-getiter-param",
        "shadowing",
        "def handler(ctx, step, _getiter_=list):\n    return [x for x in [1]]\n",
        "compile",
    ),
    A("global-statement", "shadowing", h("global http\nhttp = 1\nreturn 1"), "compile"),
    A(
        "class-definition",
        "shadowing",
        "class X:\n    pass\n\ndef handler(ctx, step):\n    return 1\n",
        "compile",
    ),
    # host objects through step, http, ctx and exception arguments ------------------------
    A("step-private-host", "host-objects", h("return step._host"), "compile"),
    A(
        "step-method-self",
        "host-objects",
        h("return str(getattr(step.run, 'im_self'))"),
        "failed",
        "not available",
    ),
    A("http-client", "host-objects", h("return str(http.client)"), "failed", "not available"),
    A("log-host", "host-objects", h("return str(getattr(ctx.log, 'host'))"), "failed", "not available"),
    A("ctx-activation", "host-objects", h("return str(ctx.activation)"), "failed", "not available"),
    A(
        "exception-args-walk",
        "host-objects",
        h(
            "try:\n    step.invoke('c', function='no-such-skill')\nexcept Exception as e:\n"
            "    return [repr(a) for a in e.args]"
        ),
        "completed",
    ),
    A(
        "exception-args-objects",
        "host-objects",
        h(
            "try:\n    step.run('boom', lambda: 1 / 0)\nexcept StepError as e:\n"
            "    return [str(a) for a in e.args] + [e.error_type, e.step_id]"
        ),
        "completed",
    ),
    A(
        "response-internals",
        "host-objects",
        h("return str(http.get('http://127.0.0.1:9/').request)"),
        "failed",
        "inside step.run",
    ),
    # raw modules ----------------------------------------------------------------------------
    A("import-os", "raw-modules", "import os\n\ndef handler(ctx, step):\n    return os.environ\n", "compile"),
    A(
        "from-import",
        "raw-modules",
        "from os import environ\n\ndef handler(ctx, step):\n    return 1\n",
        "compile",
    ),
    A("json-module-reach", "raw-modules", h("return str(json.decoder)"), "failed", "not available"),
    A("re-module-reach", "raw-modules", h("return str(re.sre_compile)"), "failed", "not available"),
    A("datetime-module-reach", "raw-modules", h("return str(datetime.sys)"), "failed", "not available"),
    A("math-module-reach", "raw-modules", h("return str(math.sys)"), "failed", "sys"),
    A("open-builtin", "raw-modules", h("return open(SECRET).read()"), "failed", "open"),
    A("eval-exec", "raw-modules", h("return eval('open(SECRET).read()')"), "compile"),
    A("exec-builtin", "raw-modules", h("f = exec\nreturn f('x = 1')"), "failed", "exec"),
    A("vars-globals", "raw-modules", h("return str(globals())"), "failed", "globals"),
    A("pickle-loads", "pickle", h("return pickle.loads(b'cos\\nsystem\\n.')"), "failed", "pickle"),
    A("json-object-hook", "pickle", h("return json.loads('{}', object_hook=str)"), "failed", "object_hook"),
    # memory bombs ---------------------------------------------------------------------------
    A("string-repeat", "memory", h("return len('a' * 10**10)"), "failed", "too large"),
    A("list-repeat", "memory", h("return len([0] * 10**9)"), "failed", "too large"),
    A("format-width", "memory", h("return len(f'{1:>{10**10}}')"), "failed", "MemoryError"),
    A("to-bytes", "memory", h("return len((1).to_bytes(10**10, 'big'))"), "failed", "MemoryError"),
    A(
        "growing-list",
        "memory",
        h("x = []\nwhile True:\n    x.append('a' * 10**6 + str(len(x)))"),
        "failed",
        "MemoryError",
    ),
    A(
        "join-bomb",
        "memory",
        h("return len(''.join(['a' * 10**7 for i in range(200)]))"),
        "failed",
        "MemoryError",
    ),
    # CPU bombs ------------------------------------------------------------------------------
    A("busy-loop", "cpu", h("while True:\n    pass"), "failed", "CPU time limit"),
    A(
        "busy-loop-bare-except",
        "cpu",
        h("while True:\n    try:\n        while True:\n            pass\n    except:\n        pass"),
        "failed",
        "CPU time limit",
    ),
    A(
        "busy-loop-in-step",
        "cpu",
        "def spin():\n    while True:\n        pass\n\ndef handler(ctx, step):\n    return step.run('spin', spin)\n",
        "failed",
        "CPU time limit",
    ),
    A(
        "comprehension-bomb-in-step",
        "memory",
        h("return step.run('big', lambda: [1 for i in range(10**6) for j in range(10**6)])"),
        "failed",
        "",  # MemoryError or the CPU limit, whichever comes first
    ),
    A("long-c-call", "cpu", h("return math.comb(10**7, 5 * 10**6) % 7"), "failed", "CPU time limit"),
    A("big-power", "cpu", h("return len(str(10 ** 10 ** 10))"), "failed", "too large"),
    A("big-pow-builtin", "cpu", h("return pow(7, 10**9) % 10"), "failed", "too large"),
    A("catastrophic-regex", "cpu", h("return bool(re.match('(a+)+$', 'a' * 100000 + 'b'))"), "completed"),
    A("huge-range", "cpu", h("return sum(range(10**12))"), "failed", "over the limit"),
    # deep recursion -------------------------------------------------------------------------
    A(
        "recursion",
        "recursion",
        "def f(n):\n    return f(n + 1)\n\ndef handler(ctx, step):\n    return f(0)\n",
        "failed",
        "RecursionError",
    ),
    A("deep-literal", "recursion", h("return " + "[" * 5000 + "]" * 5000), "compile"),
    A("long-expression", "recursion", h("return " + " + ".join(["1"] * 5000)), "compile"),
    A("deep-json", "recursion", h("return json.loads('[' * 100000 + ']' * 100000)"), "failed", "Recursion"),
    # huge results and messages ------------------------------------------------------------
    A("huge-result", "results", h("return 'a' * 5000000"), "failed", "over"),
    A(
        "huge-step-result",
        "results",
        h("return step.run('big', lambda: 'a' * 5000000)"),
        "failed",
        "over the limit",
    ),
    A(
        "log-flood",
        "results",
        h("for i in range(100000):\n    ctx.log.info('x' * 1000)\nreturn 'done'"),
        "completed",
    ),
    A(
        "step-flood",
        "results",
        h("for i in range(30000):\n    step.now('t')\nreturn 'done'"),
        "failed",
        "at most",
        cpu_seconds=30,  # 10,000 step messages must not meet the CPU limit first on a slow machine
    ),
    A("huge-step-id", "results", h("return step.run('x' * 10000, lambda: 1)"), "failed", "step id"),
    A(
        "print-flood",
        "results",
        h("for i in range(100000):\n    print('y' * 1000)\nreturn len(printed)"),
        "completed",
    ),
    A("unjsonable-result", "results", h("return step"), "failed", "plain JSON"),
    A("nan-result", "results", h("return float('nan')"), "failed", "plain JSON"),
    # code that runs after the run ends ----------------------------------------------------
    A(
        "swallowed-suspension",
        "after-end",
        h(
            "try:\n    step.sleep('nap', '1h')\nexcept:\n    pass\nreturn step.run('after', lambda: open(SECRET).read())"
        ),
        "sleeping",
    ),
    A(
        "finally-after-suspend",
        "after-end",
        h("try:\n    step.sleep('nap', '1h')\nfinally:\n    step.run('after', lambda: open(SECRET).read())"),
        "sleeping",
    ),
    A(
        "weakref-finalizer",
        "after-end",
        h("weakref.finalize(step, lambda: open(SECRET).read())\nreturn 1"),
        "failed",
        "weakref",
    ),
    # SystemExit and friends ------------------------------------------------------------------
    A("system-exit", "exit", h("raise SystemExit(0)"), "failed", "SystemExit"),
    A("keyboard-interrupt", "exit", h("raise KeyboardInterrupt()"), "failed", "KeyboardInterrupt"),
    A("base-exception", "exit", h("raise BaseException('x')"), "failed", "BaseException"),
    A("exit-builtin", "exit", h("exit(0)"), "failed", "exit"),
    # outbound network -------------------------------------------------------------------------
    A(
        "http-loopback",
        "network",
        h("return step.run('r', lambda: http.get('http://127.0.0.1:5432/').text)"),
        "failed",
        "not allowed",
    ),
    A(
        "http-file-url",
        "network",
        h("return step.run('r', lambda: http.get('file://' + SECRET).text)"),
        "failed",
        "only http and https",
    ),
]
