"""House rules of the package, checked on its source.

* no function or method in rankfusion/ longer than 80 lines, docstring and decorators included;
* the rank tolerance ``sqrt(max(N, D)) * eps * sigma_max`` is written as a formula once
  (:func:`rankfusion.spectral.rank_tolerance`); every other place imports it.
"""

import ast
from pathlib import Path

import pytest

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
    defined_in = Path(inspect.getsourcefile(spectral.rank_tolerance)).relative_to(PACKAGE.parent).as_posix()
    file, line = where[0].split(":")
    assert file == defined_in and start <= int(line) < start + len(lines), where


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


# ------------------------------------------------------------------ imports only point down
#: Modules a function may import inside its body: optional engines loaded only when used (dask,
#: zarr, h5py; matplotlib; lightning).
LAZY_IMPORT_ALLOWED = {"rankfusion.stores", "rankfusion.plots", "rankfusion.integrations.lightning"}
#: Packages whose functions may import any package module: the command line imports a command's
#: machinery (torch among it) only when that command runs, so `rankfusion --help` and
#: `rankfusion spectrum` start without loading torch.
LAZY_IMPORTERS = ("rankfusion.cli",)
#: Single edges a function may take, each with its reason: the fusion probe builds on R3D's fuser
#: (torch) only when it fits, so `import rankfusion.selection` (the criterion on feature files, and
#: modality-select's caller, which computes while its workers import torch) loads no torch.
LAZY_EDGES = {("rankfusion.selection.probe", "rankfusion.model")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(target: str, known) -> str | None:
    """The package module an import names (``rankfusion.a.b.name`` -> ``rankfusion.a.b``)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_edges(sources: dict) -> dict:
    """``{module: {(imported module, at function level), ...}}`` for ``{module: source}``.

    Module- and function-level imports alike; a package's ``__init__`` importing its own parts
    (its public face) is not an edge; the root package ``rankfusion`` is never a target.
    """
    known = set(sources)
    edges = {m: set() for m in sources}
    for m, src in sources.items():
        is_pkg = m in {k.rpartition(".")[0] for k in known}
        pkg = m if is_pkg else m.rpartition(".")[0]
        tree = ast.parse(src)
        in_function = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function.update(id(n) for n in ast.walk(node) if n is not node)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for t in names:
                r = _resolve(t, known)
                if r and r != m and r != "rankfusion" and r.startswith("rankfusion"):
                    if is_pkg and r.startswith(m + "."):
                        continue
                    edges[m].add((r, id(node) in in_function))
    return edges


def find_cycles(edges: dict) -> list:
    """Every import circle, each as ``[a, b, ..., a]`` (one per strongly connected component)."""
    graph = {m: {t for t, _ in ts} for m, ts in edges.items()}
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(u):  # Tarjan's strongly connected components
        index[u] = low[u] = counter[0]
        counter[0] += 1
        stack.append(u)
        on.add(u)
        for v in sorted(graph.get(u, ())):
            if v not in index:
                visit(v)
                low[u] = min(low[u], low[v])
            elif v in on:
                low[u] = min(low[u], index[v])
        if low[u] == index[u]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == u:
                    break
            if len(comp) > 1:
                out.append(sorted(comp) + [sorted(comp)[0]])

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def _package_sources():
    return {_module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def test_import_graph_has_no_cycle():
    cycles = find_cycles(import_edges(_package_sources()))
    assert not cycles, f"import circles (move the shared helper down a layer): {cycles}"


def test_no_function_level_import_of_package_modules():
    lazy = sorted(f"{m} -> {t}" for m, ts in import_edges(_package_sources()).items()
                  for t, in_fn in ts if in_fn and t not in LAZY_IMPORT_ALLOWED
                  and not m.startswith(LAZY_IMPORTERS) and (m, t) not in LAZY_EDGES)
    assert not lazy, f"imports of rankfusion modules inside functions (import at the top): {lazy}"


def test_cycle_detector_finds_direct_and_hidden_circles():
    src = {
        "rankfusion.a": "from .b import f\n",
        "rankfusion.b": "def f():\n    from .c import g\n",       # function-level edge b -> c
        "rankfusion.c": "import rankfusion.a\n",                    # closes a -> b -> c -> a
        "rankfusion.d": "from rankfusion.e import x\n",
        "rankfusion.e": "x = 1\n",
        "rankfusion.pkg": "from .pkg.part import y\n",               # a package face: no edge
        "rankfusion.pkg.part": "from ..e import x\ny = x\n",
    }
    edges = import_edges(src)
    assert ("rankfusion.c", True) in edges["rankfusion.b"]
    assert edges["rankfusion.pkg"] == set() and edges["rankfusion.pkg.part"] == {("rankfusion.e", False)}
    assert find_cycles(edges) == [["rankfusion.a", "rankfusion.b", "rankfusion.c", "rankfusion.a"]]
    assert find_cycles(import_edges({k: v for k, v in src.items() if k != "rankfusion.c"})) == []


# ------------------------------------------------------------------ the project speaks of itself
ROOT = PACKAGE.parent
#: Material outside the repository that no file of the project may point at.
OUTSIDE = ("DESIGN" + ".md", "../" + "shared")


def outside_references(paths, root=ROOT) -> list:
    """``"path:line"`` (relative to ``root``) of every line of ``paths`` naming material outside the repository."""
    hits = []
    for p in paths:
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if any(o in line for o in OUTSIDE):
                hits.append(f"{p.relative_to(root)}:{i}")
    return hits


def _project_files():
    for folder in ("rankfusion", "tests", "docs", "analysis", "benchmarks", ".ci"):
        yield from (p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".cfg", ".toml", ""))
    yield from (ROOT / n for n in ("README.md", "setup.cfg", "pyproject.toml", "Makefile") if (ROOT / n).exists())


def test_no_reference_to_material_outside_the_repository():
    hits = outside_references(_project_files())
    assert not hits, f"lines pointing outside the repository (move what users need into docs/): {hits}"


def test_outside_reference_detector(tmp_path):
    p = tmp_path / "x.md"
    p.write_text("fine\nsee " + OUTSIDE[0] + " for more\n", encoding="utf-8")
    assert outside_references([p], root=tmp_path) == ["x.md:2"]
