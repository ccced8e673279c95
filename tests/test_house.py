"""House rules of the package checked on its source (DESIGN.md, HELPERS.md standards).

* no function or method in rankfusion/ longer than 80 lines, docstring and decorators included;
* the rank tolerance ``sqrt(max(N, D)) * eps * sigma_max`` is written as a formula once
  (:func:`rankfusion.spectral.rank_tolerance`); every other place imports it.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rankfusion"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


#: The house limit on a function's length in lines, from its first decorator to its last line.
MAX_FUNCTION_LINES = 80


def function_lengths():
    """``(lines, "path:line name")`` of every function and method in the package."""
    out = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                out.append((node.end_lineno - start + 1, f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"))
    return out


def test_no_function_longer_than_80_lines():
    long = sorted((n, where) for n, where in function_lengths() if n > MAX_FUNCTION_LINES)
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_function_length_counts_docstring_and_decorators():
    # the measure itself: a decorated function of 3 body lines and a 3-line docstring is 8 lines
    src = 'import functools\n@functools.cache\ndef f():\n    """Doc.\n\n    More."""\n    a = 1\n    b = 2\n    return a + b\n'
    node = ast.parse(src).body[1]
    assert node.end_lineno - min([node.lineno] + [d.lineno for d in node.decorator_list]) + 1 == 8


def _factors(node):
    """The operands of a chain of ``*`` (``a * b * c`` -> [a, b, c])."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return _factors(node.left) + _factors(node.right)
    return [node]


def _is_sqrt_call(node) -> bool:
    f = node.func if isinstance(node, ast.Call) else None
    return (isinstance(f, ast.Name) and f.id == "sqrt") or (isinstance(f, ast.Attribute) and f.attr == "sqrt")


def _mentions_eps(node) -> bool:
    # a machine epsilon: a name or attribute spelled *eps* (eps, eps_in, _EPS64, finfo(...).eps) or finfo itself
    for n in ast.walk(node):
        name = n.id if isinstance(n, ast.Name) else n.attr if isinstance(n, ast.Attribute) else ""
        if "eps" in name.lower() or name == "finfo":
            return True
    return False


def rank_tolerance_formulas():
    """``path:line`` of every product ``sqrt(...) * <eps> * ...`` in the package's code."""
    found = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            # only the outermost product of a chain: its factors already cover the inner ones
            if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)):
                continue
            factors = _factors(node)
            if any(_is_sqrt_call(f) for f in factors) and any(_mentions_eps(f) for f in factors if not _is_sqrt_call(f)):
                found.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node))
    # drop inner chains reported again by their parent
    inner = {id(sub) for _, n in found for sub in ast.walk(n) if sub is not n}
    return [where for where, n in found if id(n) not in inner]


def test_rank_tolerance_formula_written_once():
    where = rank_tolerance_formulas()
    assert len(where) == 1, f"the rank tolerance is written {len(where)} times: {where}"
    import inspect

    from rankfusion import spectral

    lines, start = inspect.getsourcelines(spectral.rank_tolerance)
    file, line = where[0].split(":")
    assert file == "rankfusion/spectral.py" and start <= int(line) < start + len(lines), where


def test_rank_tolerance_detector_finds_copies():
    # the detector itself: it sees the shapes a copy would take, and not the Gram error bound's
    src = ("a = math.sqrt(max(n, d)) * np.finfo(np.float32).eps * s[0]\n"
           "b = (np.sqrt(max(X.shape)) * eps_in) ** 2 * y\n"
           "c = (math.sqrt(n_long) + n_short) * _EPS64 * lam_max\n")
    tree = ast.parse(src)
    hits = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mult)
            and any(_is_sqrt_call(f) for f in _factors(n))
            and any(_mentions_eps(f) for f in _factors(n) if not _is_sqrt_call(f))]
    assert sorted(set(hits)) == [1, 2]
