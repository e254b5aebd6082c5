"""Repository promises: the README's commands are the ones CI runs, and the layout holds."""

from __future__ import annotations

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [block.split("\n```")[0].strip() for block in blocks]


def test_ci_runs_the_readme_test_command():
    demo, tests = _readme_commands()
    assert "edgekit build examples/ppo-Pendulum-v1.zip --env Pendulum-v1" in demo
    assert "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text().splitlines()  # the whole line, not a prefix of it


def test_ci_runs_the_unit_lane_before_the_whole_suite():
    ci = (REPO / ".ci" / "run").read_text()
    unit, whole = ci.index("-m pytest tests/unit &&"), ci.rindex("-m pytest\n")
    assert unit < whole


def test_requested_top_level_layout():
    for name in ("pyproject.toml", "README.md", "edgekit", "calibration", "tests", "device", "scripts", "LICENSE"):
        assert (REPO / name).exists(), name
    assert (REPO / "examples" / "ppo-Pendulum-v1.zip").is_file()


def _markdown_files() -> list:
    skip = {".git", ".venv", "node_modules", ".pytest_cache"}
    return [p for p in REPO.rglob("*.md") if not skip & set(p.relative_to(REPO).parts)
            and "tests/data" not in p.relative_to(REPO).as_posix()]


def test_relative_links_in_the_docs_resolve():
    """Every relative link in the repository's Markdown points at a file that exists (outside code blocks)."""
    import re

    broken = []
    for md in _markdown_files():
        text = re.sub(r"```.*?```", "", md.read_text(encoding="utf-8"), flags=re.S)
        for match in re.finditer(r"\]\(([^)\s]+)\)", text):
            target = match.group(1)
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.partition("#")[0]
            if not (md.parent / path).exists():
                broken.append(f"{md.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_nothing_points_outside_the_repository():
    """The docs may not send a reader to the development machine's reference folders."""
    offending = [f"{md.relative_to(REPO)}" for md in [*_markdown_files(), REPO / "pyproject.toml"]
                 if any(s in md.read_text(encoding="utf-8") for s in ("../shared", "/work/shared", "design card"))]
    assert not offending, offending
