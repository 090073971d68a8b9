"""The README and ``docs/`` as a reader uses them: examples run, commands parse, links lead somewhere.

- ``docs/callbacks.md``'s complete example runs as printed and fills the dashboards; the README's short
  version names callbacks that exist.
- Every ``python -m fmnist ...`` command in a ``bash`` block of README.md or ``docs/*.md`` parses as
  written (fit options by the fit parser, sweep flags by the sweep's ``--help``), every ``make``
  target and ``python -m benchmarks.<name>`` it names exists.
- Every relative link and picture leads to a file, every ``#anchor`` to a heading.
- The README stays a guide (at most 300 lines); imports go down as its Development section says;
  no accuracy of ``docs/results.md`` is written again elsewhere in the prose or the configs.
"""

import ast
import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import REPO, events, run_dirs

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RESULTS = REPO / "docs" / "results.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def prose(page: Path) -> str:
    """The page without its code blocks and inline code: what is rendered as text, links and headings."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", page.read_text()))


def section(page: Path, heading: str) -> str:
    return page.read_text().split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def python_in(page: str, heading: str) -> str:
    """The one Python block under ``heading`` of ``page``."""
    (code,) = re.findall(r"```python\n(.*?)```", section(REPO / page, heading), re.DOTALL)
    return code


# ---------------------------------------------------------------------------------------- examples


def test_own_project_example_runs_and_shows_its_class_names() -> None:
    code = python_in("docs/callbacks.md", "## A complete example")
    assert "fmnist" not in code
    exec(compile(code, "docs/callbacks.md", "exec"), {"__name__": "readme_example"})
    (run,) = run_dirs()
    assert run == Path("runs/shapes/version_0")
    board = events(run)
    assert {"Sample Images", "Confusion Matrix"} <= set(board.Tags()["images"])
    assert {f"PR/{name}" for name in ("circle", "square", "star")} <= set(board.Tags()["tensors"])
    assert board.Tags()["graph"] and board.Tags()["histograms"]
    (metadata,) = run.glob("*/net.4.input/metadata.tsv")
    assert {row.split("\t")[0] for row in metadata.read_text().splitlines()[1:]} <= {"circle", "square", "star"}


def test_readme_callbacks_snippet_names_real_callbacks() -> None:
    import callbacks

    code = python_in("README.md", "## Use the callbacks in your own project")
    compile(code, "README.md", "exec")
    named = set(re.findall(r"callbacks\.(\w+)", code))
    assert named and named <= set(callbacks.__all__)


# ---------------------------------------------------------------------------------------- commands


def commands(prefix: str) -> list[tuple[str, list[str]]]:
    """Each command of the bash blocks that starts with ``prefix``: (page, its words after ``prefix``)."""
    found = []
    for page in PAGES:
        for body in blocks(page, "bash"):
            for line in body.replace("\\\n", " ").splitlines():
                if line.startswith(prefix):
                    found.append((page.name, shlex.split(line, comments=True)[len(prefix.split()) :]))
    return found


def fit_options(words: list[str]) -> list[str] | None:
    """The words as the fit parser takes them; ``None`` for a command that needs a run made first."""
    options = []
    words = iter(words)
    for word in words:
        if word == "--ckpt_path":
            next(words)  # best, last or a file: needs a run, and tests/fmnist/test_cli.py runs those
            continue
        if word == "--print_config":
            continue
        if "runs/" in word or "<" in word:
            return None  # best.yaml of a sweep, a run's checkpoint: made by an earlier command
        options.append(word)
    return options


def test_documented_commands_exist() -> None:
    assert len(commands("python -m fmnist")) >= 20, "the README and docs show the everyday commands"
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    for page, words in commands("make"):
        assert words[0] in targets, f"{page}: make {words[0]}"
    for page in PAGES:
        for body in blocks(page, "bash"):
            for name in re.findall(r"python -m benchmarks\.(\w+)", body):
                assert (REPO / "benchmarks" / f"{name}.py").is_file(), f"{page.name}: benchmarks.{name}"


@pytest.fixture
def in_scratch(tmp_path: Path) -> Path:
    """The test's own folder (conftest's ``hermetic``) with the repository's ``configs/``, as the commands name them."""
    (tmp_path / "configs").symlink_to(REPO / "configs")
    return tmp_path


def test_documented_fit_commands_parse(in_scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fmnist.cli import FashionCLI
    from fmnist.main import main

    checked = 0
    for page, words in commands("python -m fmnist"):
        if "--help" in words:
            with pytest.raises(SystemExit) as ended:
                main(words)
            assert ended.value.code == 0, f"{page}: {words}"
            continue
        if words[0] == "sweep":
            continue
        if words[0] == "export":  # its own flags first (parsed here), then fit options
            from fmnist.export.command import parser

            words = ["export", *parser().parse_known_args(words[1:])[1]]
        assert words[0] in ("fit", "validate", "test", "predict", "export"), f"{page}: {words}"
        options = fit_options(words[1:])
        if options is None:
            continue
        cli = FashionCLI(options, run=False, instantiate=False)  # raises on an unknown option or value
        assert cli.config.model is not None
        checked += 1
    capsys.readouterr()
    assert checked >= 15
    assert not (in_scratch / "runs").exists(), "parsing makes no run folder"


def test_documented_sweep_commands_parse(in_scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fmnist.cli import FashionCLI
    from fmnist.main import main

    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    helped = re.findall(r"^  (--\w+)( [A-Z{]\S*)?", capsys.readouterr().out, re.MULTILINE)
    takes_value = {flag: bool(metavar) for flag, metavar in helped}
    assert {"--space", "--n_trials", "--workers", "--storage", "--verbose"} <= set(takes_value)
    sweeps = [(page, words[1:]) for page, words in commands("python -m fmnist") if words[0] == "sweep"]
    assert len(sweeps) >= 5
    for page, words in sweeps:
        if "--help" in words:
            continue
        fit, rest = [], iter(words)
        for word in rest:
            if word not in takes_value:
                assert word.startswith("--"), f"{page}: {words}"
                fit += [word, next(rest)]  # a fit option, applied to every trial
            elif takes_value[word]:
                value = next(rest)
                assert word != "--space" or (REPO / value).is_file(), f"{page}: {value}"
        FashionCLI(fit_options(fit), run=False, instantiate=False)
    capsys.readouterr()


# ---------------------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """The anchor GitHub (and GitLab, Gitea) gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(heading.replace("`", ""))
        found.add(base if base not in seen else f"{base}-{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return found


def test_slug_is_githubs() -> None:
    assert slug("Speed (make benchmark)") == "speed-make-benchmark"
    assert slug("configs/tuned.yaml trains fewer epochs") == "configstunedyaml-trains-fewer-epochs"
    assert slug("A sweep's database went away") == "a-sweeps-database-went-away"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_and_anchor_exists(page: Path) -> None:
    assert page.read_text().count("```") % 2 == 0, "code fences pair up"
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}"
        assert REPO in file.parents or file == REPO, f"{page.name}: {target} points outside the repository"
        if anchor:
            assert file.suffix == ".md", f"{page.name}: {target}"
            assert anchor in anchors(file), f"{page.name}: {target}: no such heading in {file.name}"


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    linked = {Path(target.partition("#")[0]).name for target in LINK.findall(prose(REPO / "README.md"))}
    assert {page.name for page in PAGES[1:]} <= linked


# ---------------------------------------------------------------------------------------- what the README says


def test_readme_is_a_guide() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    headings = re.findall(r"^## (.+)$", FENCE.sub("", text), re.MULTILINE)
    assert headings[:2] == ["Quick start", "Contents"], "the index right after the quick start"
    assert len(re.findall(r"^\| [012] \|", section(REPO / "README.md", "## When things go wrong"), re.MULTILINE)) == 3


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_imports_go_down_as_the_readme_says() -> None:
    for path in (REPO / "callbacks").glob("*.py"):
        assert not {m for m in imports(path) if m.split(".")[0] == "fmnist"}, f"{path.name} imports fmnist"
    for path in (REPO / "fmnist").rglob("*.py"):
        below_sweep = "sweep" not in path.relative_to(REPO / "fmnist").parts and path.name != "main.py"
        wrong = {m for m in imports(path) if below_sweep and (m.startswith("fmnist.sweep") or m.startswith("optuna"))}
        wrong |= {m for m in imports(path) if m == "fmnist.main" and path.name != "__main__.py"}
        assert not wrong, f"{path.relative_to(REPO)} imports {wrong}"


def test_no_result_is_written_twice() -> None:
    figures = set(re.findall(r"\b\d\.\d{4}\b", RESULTS.read_text()))
    assert len(figures) > 50
    places = [*PAGES, *(REPO / "configs").glob("*.yaml")]
    for place in places:
        if place != RESULTS:
            again = figures & set(re.findall(r"\b\d\.\d{4}\b", place.read_text()))
            assert not again, f"{place.relative_to(REPO)} repeats {sorted(again)}: link to docs/results.md"
