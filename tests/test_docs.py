"""Every command is documented: help text and a README section (sqlite-utils style)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archiver.cli import app
from tests.conftest import invoke

pytestmark = pytest.mark.engine_free  # the archive's engine plays no part

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands():
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub in subs:
                yield (name, sub)
        else:
            yield (name,)


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_command_has_help_and_a_readme_section(runner, path) -> None:
    result = invoke(runner, *path, "--help")
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    heading = "## `archiver " + path[0]
    assert heading in README, f"README has no section for {' '.join(path)}"
    if len(path) > 1:
        assert path[1] in README.split(heading, 1)[1].split("\n## ", 1)[0]


def test_readme_quickstart_runs_demo_and_the_test_command() -> None:
    quick = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0].strip() for b in quick.split("```sh\n")[1:]]
    assert blocks[0].endswith("archiver demo")
    assert blocks[1] == "pip install -e '.[test]' && python -m pytest -q"
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert "\npython -m pytest -q\n" in ci


def _options(path: tuple[str, ...]) -> list[str]:
    import typer.main

    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return [
        max(p.opts, key=len)
        for p in cmd.params
        if p.param_type_name == "option" and "--help" not in p.opts
    ]


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_option_is_in_its_commands_readme_section(path) -> None:
    section = README.split("## `archiver " + path[0], 1)[1].split("\n## ", 1)[0]
    missing = [opt for opt in _options(path) if f"`{opt}" not in section]
    assert not missing, f"README's section for {' '.join(path)} lacks {missing}"


def test_every_global_option_is_in_the_readme() -> None:
    import typer.main

    section = README.split("## Global options", 1)[1].split("\n## ", 1)[0]
    root = typer.main.get_command(app)
    names = [max(p.opts, key=len) for p in root.params if "--help" not in p.opts]
    assert [n for n in names if f"`{n}" not in section] == []


@pytest.mark.parametrize("path", list(_commands()), ids=" ".join)
def test_every_command_shows_an_example_and_its_defaults(runner, path) -> None:
    """Help a user can act on: an example to copy, every default visible, nothing eaten."""
    import re

    import typer.main

    text = invoke(runner, *path, "--help").stdout
    assert re.search(r"Examples?:\n    archiver ", text), f"{' '.join(path)} shows no example"

    assert not re.search(r"--[\w-]+ <(bool|str)>", text)  # options' metavars say what to type
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    for param in cmd.params:
        if param.param_type_name != "option" or param.is_flag or param.default is None:
            continue
        shown = str(param.default.value if hasattr(param.default, "value") else param.default)
        assert f"[default: {shown}" in " ".join(text.split()), (path, param.name)


def test_completion_can_be_installed(runner) -> None:
    assert "--install-completion" in invoke(runner, "--help").stdout


def test_the_design_docs_module_map_names_every_module_and_no_other() -> None:
    root = Path(__file__).parent.parent
    design = (root / "docs" / "design.md").read_text()
    section = design.split("## Module map", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^(archiver/\S+\.py) ", section, flags=re.M))
    present = {str(p.relative_to(root)) for p in (root / "archiver").rglob("*.py")}
    assert sorted(present - mapped) == [], "modules the map does not name"
    assert sorted(mapped - present) == [], "modules the map names that are gone"


def _anchor(heading: str) -> str:
    """The anchor GitHub makes from a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readmes_contents_and_its_sections_match() -> None:
    """The contents named `sources list | plan | remove` after `retire` joined the
    heading, and its link led nowhere; `instances` and `web` got sections the
    contents never listed. Each link finds a heading, and each section is listed."""
    anchors = {_anchor(h) for h in re.findall(r"^#{2,3} (.+)$", README, flags=re.M)}
    sections = {_anchor(h) for h in re.findall(r"^## (.+)$", README, flags=re.M)}
    links = re.findall(r"^- \[.*\]\(#([^)]+)\)$", README, flags=re.M)
    assert not [link for link in links if link not in anchors]
    assert sorted(sections - set(links)) == []


def test_the_readmes_sync_defaults_are_the_ones_a_sync_takes() -> None:
    """A sync's defaults live in ``SPECS`` (the command line and a config share them)
    and botocore's attempts in ``DEFAULT_ATTEMPTS``, not on the command's options, so
    `sync --help` cannot check them: the README's table is where users read them."""
    from archiver.sync.client import DEFAULT_ATTEMPTS
    from archiver.sync.options import SPECS, flag

    section = README.split("## `archiver sync", 1)[1].split("\n## ", 1)[0]
    said = {m[1]: m[2].strip("` ")
            for m in re.finditer(r"^\| `(--[\w-]+)[^|]*\| ([^|]*) \|", section, re.M)}  # fmt: skip
    defaults = {flag(n): s.default for n, s in SPECS.items() if s.default is not None}
    defaults["--max-attempts"] = DEFAULT_ATTEMPTS

    def as_said(default: object) -> str:  # as the table writes a default
        if isinstance(default, bool):
            return "on" if default else "off"
        return f"{default:g}" if isinstance(default, float) else str(default)

    shown = {f: as_said(d) for f, d in defaults.items() if f in said}
    assert {f: said[f] for f in shown} == shown
    assert {"--lookback", "--workers", "--max-attempts", "--call-timeout"} <= set(shown)
