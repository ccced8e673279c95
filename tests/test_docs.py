"""The documentation says what the code does: every command's ``--help``, the defaults quoted in
docs/cli.md (read from the click command objects), the figure scripts' ``--help``, and the
functions, tests and sections named in docs/paper.md."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rankfusion.cli import main

ROOT = Path(__file__).resolve().parents[1]
CLI_MD = ROOT / "docs" / "cli.md"
PAPER_MD = ROOT / "docs" / "paper.md"


# --------------------------------------------------------------------------- the command tree


def _leaves(group=main, path=()):
    """Every runnable command as ``(path, command)``, e.g. ``(("data", "synth"), <Command>)``."""
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _leaves(cmd, path + (name,))
        else:
            yield path + (name,), cmd


LEAVES = dict(_leaves())
GROUPS = [()] + sorted({p[:i] for p in LEAVES for i in range(1, len(p))})


def _options(cmd):
    return [p for p in cmd.params if isinstance(p, click.Option)]


def _option(cmd, name: str):
    return next((p for p in _options(cmd) if name in p.opts or name in p.secondary_opts), None)


@pytest.mark.parametrize("path", GROUPS + sorted(LEAVES), ids=lambda p: " ".join(("rankfusion",) + p))
def test_every_help_runs_and_lists_every_option(path):
    res = CliRunner().invoke(main, [*path, "--help"], prog_name="rankfusion")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("Usage: " + " ".join(("rankfusion",) + path)), res.output[:200]
    if path in LEAVES:
        for opt in _options(LEAVES[path]):
            assert opt.opts[0] in res.output, f"{opt.opts[0]} missing from 'rankfusion {' '.join(path)} --help'"


# --------------------------------------------------------------------------- docs/cli.md


def _resolve(words):
    """The longest command path named by ``words`` (after ``rankfusion``), or None."""
    path, node = (), main
    for w in words:
        if isinstance(node, click.Group) and w in node.commands:
            path, node = path + (w,), node.commands[w]
        else:
            break
    return path or None


class Section:
    def __init__(self, level: int, heading: str, path):
        self.level, self.heading, self.path = level, heading, path
        self.lines: list[str] = []
        self.scope: list[tuple] = []  # the leaf commands its text speaks about


def _sections(text: str) -> list[Section]:
    sections = [Section(1, "", None)]
    for line in text.splitlines():
        m = re.match(r"^(#{1,4}) (.*)$", line)
        if m:
            code = re.search(r"`rankfusion ([^`]*)`", m.group(2))
            words = code.group(1).split() if code else []
            sections.append(Section(len(m.group(1)), m.group(2), _resolve(words)))
        else:
            sections[-1].lines.append(line)
    # a command heading speaks about its command(s); any other heading about the commands below it
    for i, s in enumerate(sections):
        below = []
        for t in sections[i + 1:]:
            if t.level <= s.level:
                break
            below.append(t)
        named = [p for p in LEAVES if s.path is not None and p[:len(s.path)] == s.path]
        s.scope = named or [p for t in below if t.path for p in LEAVES if p[:len(t.path)] == t.path]
    return sections


SECTIONS = _sections(CLI_MD.read_text())
PROBLEMS: list[str] = []  # table rows the parser cannot pair with options


def _real_default(opt: click.Option):
    """The default click passes when the option is left out (flags: False; ``multiple``: ())."""
    d = opt.default
    if d is None or type(d).__name__ == "Sentinel" or repr(d).endswith("UNSET"):
        return False if opt.is_flag else (() if opt.multiple else None)
    return d


def _help_default(opt: click.Option):
    """A default the option's help states for a ``None`` default resolved in code ("(default X)")."""
    m = re.search(r"\(default:? ([^;)]+)\)|[Dd]efault:? ([^;.]+(?:\.\d[^;.]*)?)\.", opt.help or "")
    return None if m is None else (m.group(1) or m.group(2)).strip()


_LITERAL = re.compile(r"^[\w.+-][\w.,+/-]*$")
_DESCRIPTIVE_WORDS = {"all", "tightest", "every", "none"}


def _is_literal(value: str) -> bool:
    return bool(_LITERAL.match(value)) and value not in _DESCRIPTIVE_WORDS


def _clean(value: str) -> str:
    return value.replace("`", "").replace("\\|", "|").strip().rstrip(".,;").strip()


def _documented_defaults():
    """``(command path, option, documented default, where)`` for every default docs/cli.md quotes."""
    found = []
    for s in SECTIONS:
        cmds = s.scope
        # the synopsis in a command heading: "[--out figures]" (a lower-case value is the default)
        for opt, value in re.findall(r"\[(--[\w-]+) ([a-z0-9][\w.]*)\]", s.heading):
            found += [(p, opt, value, f"heading {s.heading!r}") for p in cmds]
        header = None
        for line in s.lines:
            if line.startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
                if header is None:
                    header = [c.lower() for c in cells]
                    continue
                if set(line) <= set("|- "):
                    continue
                names = re.findall(r"`(--[\w-]+)", cells[0]) if cells else []
                if not names:
                    continue
                if "default" in header:
                    raw = cells[header.index("default")]
                    if " / " in cells[0]:  # alternatives ("--k-prime N / --eta V"): the first one's default
                        raws = [raw] + [""] * (len(names) - 1)
                    elif len(names) == 1:
                        raws = [raw]
                    else:  # "--min-frames, --max-frames | 150, 350", or one value for all
                        parts = [v.strip() for v in raw.split(",")]
                        if len(parts) not in (1, len(names)):
                            PROBLEMS.append(f"{len(names)} options but {len(parts)} defaults: {line}")
                            continue
                        raws = parts if len(parts) == len(names) else [raw] * len(names)
                    for name, value in zip(names, raws):
                        if value:
                            found += [(p, name, value, line) for p in cmds]
                else:  # tables without a default column say "default X" in the meaning
                    m = re.search(r"(?:^|\()default:? ([^;|):]+)", cells[1]) if len(cells) > 1 else None
                    if m:
                        found += [(p, names[0], m.group(1), line) for p in cmds]
                continue
            header = None
        text = " ".join(s.lines)
        for opt, inner in re.findall(r"`(--[\w-]+)[^`]*`[^`(|]{0,60}?\(((?:[^()]|\([^()]*\))*)\)", text):
            m = re.search(r"(?:^|; )default:? (.+?)(?:;|$)", inner)
            if m:
                found += [(p, opt, m.group(1), f"{s.heading!r}: ({inner})") for p in cmds]
        for opt, value in re.findall(r"`(--[\w-]+)`, default ([\w.]+)", text):
            found += [(p, opt, value, f"{s.heading!r}: {opt}, default {value}") for p in cmds]
    return [f for f in found if f is not None]


DOCUMENTED = _documented_defaults()


def _check(path, name, documented, where):
    cmd = LEAVES[path]
    opt = _option(cmd, name)
    if opt is None:
        return None  # an option of a sibling command in a shared paragraph
    value = _clean(documented)
    real = _real_default(opt)
    here = f"docs/cli.md ({where}): rankfusion {' '.join(path)} {name}"
    if value == "required":
        assert opt.required, f"{here} is documented as required but is not"
        return True
    assert not opt.required, f"{here} is required but documented with default {value!r}"
    if value in ("off", "on"):
        assert opt.is_flag and real is (value == "on"), f"{here}: documented {value}, real default {real!r}"
        return True
    if value == "none":
        # a repeatable option given no value holds an empty tuple
        assert real is None or (opt.multiple and tuple(real) == ()), f"{here}: documented none, real default {real!r}"
        return True
    if callable(real) or not _is_literal(value):
        # a default computed when the command runs: the docs describe it, click has no value
        assert callable(real) or real in (None, ()), \
            f"{here}: documented as {value!r}, but the real default is the value {real!r}"
        if isinstance(opt.show_default, str):
            assert value == opt.show_default, f"{here}: documented {value!r}, --help shows {opt.show_default!r}"
        return True
    if real is None:
        stated = _help_default(opt)
        assert stated is not None, f"{here}: documented {value!r}, but the option's default is None"
        assert value == stated, f"{here}: documented {value!r}, the option's help says {stated!r}"
        return True
    with click.Context(cmd) as ctx:
        converted = opt.type_cast_value(ctx, value)
    assert converted == real, f"{here}: documented {value!r}, real default {real!r}"
    return True


def test_docs_quote_enough_defaults_to_be_worth_checking():
    assert not PROBLEMS, "docs/cli.md: " + "; ".join(PROBLEMS)
    # the parser found the defaults the tables and the prose give (a parser that finds nothing checks nothing)
    options = {(p, n) for p, n, _, _ in DOCUMENTED}
    assert len(options) >= 60
    assert ((("data", "synth"), "--videos") in options and (("theorem",), "--zero-mean-tol") in options
            and (("figures",), "--workers") in options and (("train",), "--seed") in options)


@pytest.mark.parametrize("path, name, documented, where", DOCUMENTED,
                         ids=[f"{' '.join(p)} {n}" for p, n, _, _ in DOCUMENTED])
def test_documented_default_is_the_real_default(path, name, documented, where):
    _check(path, name, documented, where)


def test_default_check_catches_a_wrong_default():
    synth = ("data", "synth")
    real = _real_default(_option(LEAVES[synth], "--videos"))
    with pytest.raises(AssertionError, match="--videos"):
        _check(synth, "--videos", str(real + 1), "test")
    with pytest.raises(AssertionError, match="--force"):
        _check(synth, "--force", "on", "test")
    with pytest.raises(AssertionError, match="--seed"):
        _check(synth, "--seed", "every video", "test")  # a described default for an option with a value
    with pytest.raises(AssertionError, match="--split-set"):
        _check(("data", "check"), "--split-set", "split2", "test")  # against the help's "(default split1)"
    assert _check(synth, "--videos", str(real), "test")


@pytest.mark.parametrize("path", sorted(LEAVES), ids=lambda p: " ".join(p))
def test_every_option_is_documented(path):
    text = "\n".join(s.heading + "\n" + "\n".join(s.lines) for s in SECTIONS if path in s.scope)
    assert text, f"docs/cli.md has no section for rankfusion {' '.join(path)}"
    missing = [o.opts[0] for o in _options(LEAVES[path])
               if not any(re.search(re.escape(n) + r"(?![\w-])", text) for n in o.opts + o.secondary_opts)
               and o.name != "help"]
    assert not missing, f"rankfusion {' '.join(path)}: options missing from docs/cli.md: {missing}"


# --------------------------------------------------------------------------- analysis/ scripts

SCRIPTS = sorted(p.stem for p in (ROOT / "analysis").glob("*.py") if not p.stem.startswith("_"))


def test_there_are_figure_scripts():
    assert len(SCRIPTS) >= 7


def test_every_family_docs_do_not_except_has_a_figure_script():
    from rankfusion.figures import FAMILIES

    text = " ".join((ROOT / "docs" / "analysis.md").read_text().split())
    said = re.search(r"`analysis/\*\.py` are thin scripts, one per figure family but (.*?) \(", text)
    assert said, "docs/analysis.md no longer says which families have a script"
    excepted = set(re.findall(r"`(\w+)`", said[1]))
    scripted = {m[1] for p in (ROOT / "analysis").glob("*.py")
                for m in [re.search(r'run_family\("(\w+)"', p.read_text())] if m}
    assert excepted <= set(FAMILIES) and not excepted & scripted
    assert scripted | excepted == set(FAMILIES), f"families without a script: {set(FAMILIES) - scripted - excepted}"


def test_the_module_table_names_every_figure_family():
    from rankfusion.figures import FAMILIES

    text = " ".join((ROOT / "docs" / "analysis.md").read_text().split())
    row = re.search(r"\| `rankfusion\.figures` \| the figure families, one module each \((.*?)\), each with", text)
    assert row, "docs/analysis.md's module table no longer lists the figure families"
    assert set(re.findall(r"`(\w+)`", row[1])) == set(FAMILIES)


@pytest.mark.parametrize("name", SCRIPTS)
def test_analysis_script_help(name):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", f"analysis.{name}", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = importlib.import_module(f"analysis.{name}").__doc__.splitlines()[0]
    assert proc.stdout.startswith("usage:") and "--data" in proc.stdout
    assert " ".join(doc.split()) in " ".join(proc.stdout.split())  # the family's own description


# --------------------------------------------------------------------------- docs/paper.md


def _paper_references():
    text = PAPER_MD.read_text()
    funcs = sorted(set(re.findall(r"`((?:rankfusion|analysis)(?:\.\w+)+)`", text)))
    tests = sorted(set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", text)))
    links = sorted(set(re.findall(r"\]\(([\w.-]*\.md)?(?:#([\w-]+))?\)", text)))
    return funcs, tests, links


def _slugs(path: Path) -> set:
    """The anchors a Markdown renderer gives the headings of ``path`` (lower case, punctuation
    dropped, spaces to hyphens)."""
    return {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-")
            for h in re.findall(r"^#+ (.*)$", path.read_text(), flags=re.M)}


def _resolve_dotted(name: str):
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_paper_map_names_only_what_exists():
    funcs, tests, links = _paper_references()
    assert len(funcs) >= 30 and len(tests) >= 20
    for name in funcs:
        try:
            _resolve_dotted(name)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"docs/paper.md names {name}, which does not exist ({exc})")
    for path, test in tests:
        source = (ROOT / path).read_text() if (ROOT / path).exists() else pytest.fail(f"no {path}")
        if test:
            assert re.search(rf"def {test}\b", source), f"docs/paper.md names {path}::{test}, which does not exist"
    assert len(links) >= 15
    for path, anchor in links:
        target = ROOT / "docs" / (path or "paper.md")
        assert target.exists(), f"docs/paper.md links {path}, which does not exist"
        if anchor:
            assert anchor in _slugs(target), f"docs/paper.md links {path}#{anchor}, a heading that does not exist"


def test_paper_map_covers_every_paper_item():
    text = PAPER_MD.read_text()
    items = ([f"Eq. {i}" for i in range(1, 6)] + ["Def. 1", "Theorem 3.1"]
             + [f"Assumption {i}" for i in range(1, 5)] + [f"Table {i}" for i in range(1, 10)]
             + [f"Fig. {i}" for i in range(2, 10)])
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    for item in items:
        assert any(re.match(rf"\| (\*\*)?{re.escape(item)}\b", r) for r in rows), f"docs/paper.md has no row for {item}"


# --------------------------------------------------------------------------- docs/formats.md


def _md_tables(text: str) -> list:
    """Every Markdown table of ``text`` as a list of rows, each a list of cells (header row first)."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not re.match(r"^\|[-| ]+\|$", line):
                rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def test_formats_eval_table_names_every_column_and_row_of_the_file():
    import fnmatch

    pd = pytest.importorskip("pandas")
    pytest.importorskip("torch")
    from rankfusion.evaluate import UTILIZATION_METRICS, _aggregate
    from rankfusion.metrics import DEFAULT_OVERLAPS

    section = (ROOT / "docs" / "formats.md").read_text().split("## Evaluation tables")[1].split("\n## ")[0]
    tables = _md_tables(section)
    documented = [n for row in tables[0][1:] for n in re.findall(r"`([^`]+)`", row[0])]
    one = pd.DataFrame({"seed": [1], "metric": ["moc"], "modality": [""], "obs": [0.2], "beta": [0.1], "value": [1.0]})
    assert documented == list(_aggregate(one).columns)  # the columns evaluate writes, in order
    assert len(tables) > 1, "no table of the rows after the columns"
    rows = tables[1]
    known = {"moc", "accuracy", "edit", *(f"f1@{round(100 * ov)}" for ov in DEFAULT_OVERLAPS), *UTILIZATION_METRICS}
    named = [n for row in rows[1:] for n in re.findall(r"`([^`]+)`", row[0]) if not n.startswith("--")]
    covered = {k for n in named for k in known if fnmatch.fnmatchcase(k, n)}
    assert covered == known and all(any(fnmatch.fnmatchcase(k, n) for k in known) for n in named), named


def test_model_doc_quotes_the_committed_collapse_indices():
    # docs/model.md quotes each arm's collapse index (mean +- sd over seeds) from the committed
    # figures/collapse_remedies.md; a regenerated table must not leave a stale number behind
    pd = pytest.importorskip("pandas")
    cells = pd.read_csv(ROOT / "figures" / "collapse_cells.csv")
    cells = cells[(cells["quantity"] == "collapse_index") & (cells["level"] == cells["level"].max())]
    index = {arm: (round(m), round(s)) for arm, m, s in zip(cells["arm"], cells["mean"], cells["sd"])}
    text = " ".join((ROOT / "docs" / "model.md").read_text().split("## Remedies against modality collapse")[1]
                    .split("\n## ")[0].split())
    quoted = {"plain fusion": r"collapse index (\d+) \+- (\d+) %", "R3D (RTF)": r"RTF \((\d+) \+- (\d+) %",
              "plain + modality dropout": r"modality dropout \((\d+) \+- (\d+) %",
              "plain + unimodal heads": r"unimodal heads \((\d+) \+- (\d+) %", "plain + OGM-GE": r"OGM-GE \((\d+) \+- (\d+) %"}
    for arm, pattern in quoted.items():
        found = re.search(pattern, text)
        assert found, f"docs/model.md does not quote the collapse index of {arm!r}"
        assert (int(found[1]), int(found[2])) == index[arm], \
            f"docs/model.md quotes {arm!r} at {found[1]} +- {found[2]} %, figures/collapse_cells.csv has {index[arm]}"


def test_docs_state_one_rejection_rule():
    # every test rejects at p <= alpha (stats.rejects); a sentence giving any test a strict "p < alpha"
    # rule (other than the printed "p < 0.001") contradicts it
    strict = re.compile(r"(?<![<>=])\bp\s*(?:<|&lt;)\s*(?:0?\.0[1-9]\b|alpha\b)")
    texts = {p: p.read_text() for p in [*sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.py"))]}
    hits = [f"{p.name}: {m.group(0)!r}" for p, t in texts.items() for m in strict.finditer(" ".join(t.split()))]
    assert not hits, hits
