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
    assert tests in (REPO / ".ci" / "run").read_text()


def test_ci_runs_the_unit_lane_before_the_whole_suite():
    ci = (REPO / ".ci" / "run").read_text()
    unit, whole = ci.index("-m pytest tests/unit &&"), ci.rindex("-m pytest\n")
    assert unit < whole


def test_layout_from_the_design_card():
    for name in ("pyproject.toml", "README.md", "edgekit", "calibration", "tests", "device", "scripts", "LICENSE"):
        assert (REPO / name).exists(), name
    assert (REPO / "examples" / "ppo-Pendulum-v1.zip").is_file()
