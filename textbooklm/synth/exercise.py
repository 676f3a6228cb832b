"""A teacher's exercise reply -> HumanEval-style parts, or a named reason why it cannot be one.

The parts: ``prompt`` (imports, helper functions, then the entry function's signature and docstring),
``completion`` (the entry function's body after the docstring), and ``test`` (``def check(candidate):``
holding every assert that calls the entry function, with the function renamed ``candidate``, as
HumanEval's tests are). Running ``prompt + completion``, then ``test``, then ``check(entry_point)`` in
the sandbox is the verification, and the evals read the same three strings.

Replies are messy, so parsing is lenient where meaning is clear and strict where it is not:
prose around the code, several fenced blocks (joined), helper functions (kept in the prompt), asserts
at top level, under ``if __name__ == "__main__":``, in ``test_*``/``check``/``main`` functions or as
unittest ``self.assertEqual``-style calls are all accepted, a block cut off at max_tokens keeps its
whole statements, and of several definitions of the name the first complete one is taken; a wrong
function name, no docstring, an empty body, or too few tests are rejections with a reason.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field
from typing import Any

from textbooklm.codeblocks import parsable_prefix, python_blocks, syntax_problem, unfenced_code
from textbooklm.synth.call_inputs import MAX_INPUTS, call_inputs, defined_names, variable_bindings
from textbooklm.synth.input_gen import generate_inputs

# Rejection reasons (also the `reason` column of the rejected dataset).
NO_CODE = "no-code"
SYNTAX_ERROR = "syntax-error"
NO_FUNCTION = "no-function"
WRONG_NAME = "wrong-name"
AMBIGUOUS = "several-definitions"
NO_DOCSTRING = "no-docstring"
NO_SOLUTION = "no-solution"
NO_TESTS = "no-tests"
TOO_FEW_TESTS = "too-few-tests"
NO_TEST_INPUTS = "no-test-inputs"


@dataclass
class ParsedExercise:
    """A reply that has every part an exercise needs (not yet verified)."""

    entry_point: str
    prompt: str
    completion: str
    test: str
    n_tests: int
    helpers: list[str] = field(default_factory=list)
    dropped_statements: int = 0
    inputs: list[str] = field(default_factory=list)  # consensus mode: argument texts of the reply's calls
    input_origins: list[str] = field(default_factory=list)  # "reply", or input_gen.py's origin of a generated one

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ExerciseError(ValueError):
    """Why a reply is not an exercise: ``reason`` (one of the constants above) and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def reply_code(reply: str) -> str:
    """The Python source of a reply: its Python blocks joined, else unfenced code.

    A block that does not parse contributes its complete leading statements (a reply cut at
    max_tokens still holds a whole function and some asserts); one with none is left out.
    """
    blocks = python_blocks(reply)
    if blocks:
        good = [b.code if b.parses else parsable_prefix(b.code) for b in blocks]
        good = [g for g in good if g]
        if not good:
            raise ExerciseError(SYNTAX_ERROR, blocks[0].syntax_error)
        return "\n\n".join(good)
    code = unfenced_code(reply)
    if not code:
        raise ExerciseError(NO_CODE, "the reply holds no Python code block and no parsable code")
    return code


_ASSERT_METHODS = {"assertEqual": "==", "assertNotEqual": "!=", "assertIn": "in", "assertNotIn": "not in",
                   "assertIs": "is", "assertIsNot": "is not", "assertLess": "<", "assertGreater": ">",
                   "assertLessEqual": "<=", "assertGreaterEqual": ">="}


class _UnittestAsserts(ast.NodeTransformer):
    """``self.assertEqual(a, b)`` -> ``assert a == b`` (and the other common assert methods)."""

    def visit_Expr(self, node: ast.Expr) -> ast.AST:  # noqa: N802 - ast's naming
        call = node.value
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "self"):
            return node
        method, args = call.func.attr, call.args
        test: ast.expr | None = None
        if method in _ASSERT_METHODS and len(args) >= 2:
            op = _ASSERT_METHODS[method]
            test = ast.parse(f"(_a) {op} (_b)", mode="eval").body
            test.left = args[0]  # type: ignore[attr-defined]
            test.comparators = [args[1]]  # type: ignore[attr-defined]
        elif method == "assertTrue" and args:
            test = args[0]
        elif method == "assertFalse" and args:
            test = ast.UnaryOp(op=ast.Not(), operand=args[0])
        if test is None:
            return node
        return ast.copy_location(ast.Assert(test=test, msg=None), node)


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name for n in ast.walk(node))


def _count_asserts(stmts: list[ast.stmt], name: str) -> int:
    return sum(1 for s in stmts for n in ast.walk(s) if isinstance(n, ast.Assert) and _calls(n, name))


class _Rename(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802
        if node.id == self.old:
            return ast.copy_location(ast.Name(id=self.new, ctx=node.ctx), node)
        return node


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test))


def _test_statements(tree: ast.Module, name: str, calls: bool = False) -> tuple[list[ast.stmt], set[int]]:
    """Statements holding asserts on ``name`` (with ``calls``: any call of it), and the ids of the
    top-level nodes they came from (test functions and classes, a main guard, top-level statements)."""
    found: list[ast.stmt] = []
    used: set[int] = set()

    def take(stmts: list[ast.stmt], owner: ast.stmt) -> None:
        for s in stmts:
            s = _UnittestAsserts().visit(s)
            if _calls(s, name) if calls else _count_asserts([s], name):
                found.append(s)
                used.add(id(owner))

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != name:
            if node.name.startswith("test") or node.name in ("check", "main", "run_tests"):
                take(node.body, node)
        elif isinstance(node, ast.ClassDef) and any(
            isinstance(b, ast.FunctionDef) and b.name.startswith("test") for b in node.body
        ):
            for meth in node.body:
                if isinstance(meth, ast.FunctionDef) and meth.name.startswith("test"):
                    take(meth.body, node)
        elif _is_main_guard(node):
            take(node.body, node)  # type: ignore[attr-defined]
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            take([node], node)
    return found, used


def _has_docstring(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    b = func.body
    return bool(b) and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant) and isinstance(
        b[0].value.value, str)


def parse_exercise(reply: str, name: str, min_tests: int = 1, tests_from: str = "teacher",
                   generate: bool = False) -> ParsedExercise:
    """Split a reply into prompt / completion / test for function ``name``; raise ExerciseError if it cannot.

    With ``tests_from="consensus"`` the reply's asserts are not the tests: ``inputs`` gets the distinct
    self-contained arguments of its calls to ``name`` (in asserts, prints, bare calls; call_inputs.py),
    ``test`` is left empty for the consensus step to fill, and fewer than ``min_tests`` inputs is a
    rejection (no-test-inputs when there are none). With ``generate``, a reply with fewer usable calls
    than ``min_tests`` gets type-aware inputs generated from its function's signature (input_gen.py)
    to fill up to MAX_INPUTS: the consensus of independent solutions then decides their values.
    """
    code = reply_code(reply)
    problem = syntax_problem(code)
    if problem:
        raise ExerciseError(SYNTAX_ERROR, problem)
    tree = ast.parse(code)
    lines = code.splitlines()
    funcs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    entries = [f for f in funcs if f.name == name]
    if not funcs:
        raise ExerciseError(NO_FUNCTION, "the code defines no function")
    if not entries:
        others = ", ".join(f.name for f in funcs)
        raise ExerciseError(WRONG_NAME, f"asked for {name}, the code defines {others}")
    if len(entries) > 1:
        # A teacher that "improves" its function in a later block: the first complete definition (with a
        # docstring and a body) is the exercise; the tests decide whether it is right.
        complete = [f for f in entries if _has_docstring(f) and len(f.body) > 1]
        if not complete:
            raise ExerciseError(AMBIGUOUS, f"{name} is defined {len(entries)} times, none with docstring and body")
        tree.body = [n for n in tree.body if n not in entries or n is complete[0]]
        entries = complete[:1]
    entry = entries[0]
    body = entry.body
    if not _has_docstring(entry):
        raise ExerciseError(NO_DOCSTRING, f"{name} has no docstring (an exercise's prompt is signature + docstring)")
    rest = body[1:]
    if not rest or all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                       for s in rest):
        raise ExerciseError(NO_SOLUTION, f"{name} has a docstring but no body")
    if body[0].end_lineno == rest[0].lineno:
        raise ExerciseError(NO_SOLUTION, f"{name}'s body starts on the docstring's last line")

    consensus = tests_from == "consensus"
    tests, test_owners = _test_statements(tree, name, calls=consensus)
    inputs: list[str] = []
    if consensus:
        head_nodes = [n for n in tree.body if n is not entry and id(n) not in test_owners]
        allowed = defined_names(head_nodes)
        scopes = [s for n in tree.body if n is not entry and not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                                  ast.ClassDef))
                  for s in (n.body if _is_main_guard(n) else [n])]  # type: ignore[attr-defined]
        scopes += [s for n in tree.body if id(n) in test_owners and isinstance(n, ast.FunctionDef) for s in n.body]
        inputs = call_inputs(tests, name, allowed, variable_bindings(scopes, allowed))
        origins = ["reply"] * len(inputs)
        if generate and len(inputs) < min_tests and isinstance(entry, ast.FunctionDef):
            for g in generate_inputs(entry, limit=MAX_INPUTS):
                if g.args not in inputs and len(inputs) < MAX_INPUTS:
                    inputs.append(g.args)
                    origins.append(g.origin)
        if not inputs:
            raise ExerciseError(NO_TEST_INPUTS, f"no self-contained call of {name} to take test inputs from")
        if len(inputs) < min_tests:
            raise ExerciseError(TOO_FEW_TESTS, f"{len(inputs)} distinct input(s) for {name}, at least {min_tests} "
                                "needed")
        n_tests = 0
    else:
        n_tests = _count_asserts(tests, name)
        if n_tests == 0:
            raise ExerciseError(NO_TESTS, f"no assert calls {name}")
        if n_tests < min_tests:
            raise ExerciseError(TOO_FEW_TESTS, f"{n_tests} assert(s) call {name}, at least {min_tests} needed")

    # Prompt: imports and helper definitions (in source order), then the entry's head + docstring.
    head: list[str] = []
    helpers: list[str] = []
    dropped = 0
    for node in tree.body:
        seg = "\n".join(lines[(node.decorator_list[0].lineno if getattr(node, "decorator_list", None)
                               else node.lineno) - 1: node.end_lineno])
        if node is entry:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            head.append(seg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and id(node) not in test_owners:
            head.append(seg)
            helpers.append(node.name)
        elif id(node) not in test_owners:
            dropped += 1
    start = (entry.decorator_list[0].lineno if entry.decorator_list else entry.lineno) - 1
    doc_end = body[0].end_lineno or entry.lineno
    signature_and_doc = "\n".join(lines[start:doc_end]) + "\n"
    completion = "\n".join(lines[doc_end: entry.end_lineno]).rstrip() + "\n"
    prompt = ("\n\n".join(head) + "\n\n\n" if head else "") + signature_and_doc

    if consensus:
        return ParsedExercise(name, prompt, completion, "", 0, helpers, dropped, inputs, origins)
    renamed = [ast.fix_missing_locations(_Rename(name, "candidate").visit(s)) for s in tests]
    test_body = "\n".join(ast.unparse(s) for s in renamed)
    test = "def check(candidate):\n" + "".join(f"    {ln}\n" for ln in test_body.splitlines())
    return ParsedExercise(name, prompt, completion, test, n_tests, helpers, dropped)
