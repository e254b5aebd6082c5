"""Published RL Zoo agents of every family build from their run folders, and the sweep agrees with the report.

Test data: tests/data/zoo-agents (MIT; README there): one small agent per family and kind of policy.
Each is built with fewer rollout steps than the defaults (the full-size figures: docs/zoo-sweep.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli, run_cli_each

from edgekit.bundle import Manifest

ZOO = REPO / "tests" / "data" / "zoo-agents"
SWEEP = REPO / "scripts" / "sweep_agents.py"
SMALL = ("--calibration-steps", "500", "--validation-steps", "500", "--report-episodes", "2")
# run folder -> (env id used, VecNormalize, wrappers, package the env needs); ars/MountainCar-v0_1 (classic
# control, VecNormalize) is built by the sweep test below
AGENTS = {
    "ars/Swimmer-v3_1": ("Swimmer-v4", False, [], "mujoco"),
    "trpo/LunarLander-v2_1": ("LunarLander-v3", False, [], "Box2D"),
    "her/PandaReach-v1_1": ("PandaReach-v3", True, [], "panda_gym"),
    "tqc/PandaReach-v1_1": ("PandaReach-v3", True, ["TimeFeatureWrapper"], "panda_gym"),
}
# Deployment checks with a quarter of the default calibration observations: the int8 policy acts like SB3's
# (measured here: ARS Swimmer mean 0.9 %, TRPO LunarLander 95 % decisive agreement). The targets and the
# full-size figures, misses and their measured causes: docs/zoo-sweep.md.
MEAN_SHARE_MAX, DECISIVE_MIN = 0.02, 0.90

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the module fixture builds every agent (900 s each at most)


@pytest.fixture(scope="module")
def zoo_bundles(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Each agent built by `edgekit build RUN_FOLDER` alone: the env id, VecNormalize and wrappers come from
    its layout; (bundle, the build's stderr)."""
    import importlib.util

    out = tmp_path_factory.mktemp("zoo-agents")
    folders = [folder for folder, (_env, _norm, _wrappers, package) in AGENTS.items()
               if package is None or importlib.util.find_spec(package) is not None]  # else its test skips
    bundles = [out / folder.replace("/", "-") for folder in folders]
    procs = run_cli_each([("build", str(ZOO / folder), "-o", str(bundle), *SMALL)
                          for folder, bundle in zip(folders, bundles)], timeout=900)
    return {folder: (bundle, proc.stderr if proc.returncode == 0 else f"FAILED {proc.returncode}\n{proc.stderr}")
            for folder, bundle, proc in zip(folders, bundles, procs)}


def _needs(package: str | None) -> None:
    if package is not None:
        pytest.importorskip(package)


@pytest.mark.parametrize("folder", sorted(AGENTS))
def test_zoo_agent_builds_from_its_run_folder(zoo_bundles, folder):
    env_id, vecnormalize, wrappers, package = AGENTS[folder]
    _needs(package)
    bundle, stderr = zoo_bundles[folder]
    assert not stderr.startswith("FAILED"), stderr
    manifest = Manifest.read(bundle)
    assert manifest.env_id == env_id
    assert [w.name for w in manifest.environment.wrappers] == wrappers
    assert (manifest.preprocess.normalize is not None) == vecnormalize
    if env_id != Path(folder).name.rsplit("_", 1)[0]:
        assert f"using {env_id}, whose spaces fit the model" in stderr  # the one line saying so
    report = json.loads((bundle / "report.json").read_text())
    assert report["reference"]["actions"] == "sb3_predict"
    validation = report["validation"]
    if "continuous" in validation:
        c = validation["continuous"]
        assert c["mean_share_of_range"] <= MEAN_SHARE_MAX, c
    else:
        assert validation["discrete"]["decisive_agreement"] >= DECISIVE_MIN, validation["discrete"]
    assert report["edgetpu"]["fully_mappable"]
    assert report["closed_loop"]["status"] == "ok"


def test_time_feature_bundle_plays_its_wrapped_env(zoo_bundles):
    """`edgekit run` reproduces the TimeFeatureWrapper recorded in the manifest (the model reads 7 features
    in the 'observation' key; PandaReach-v3 alone returns 6)."""
    _needs("panda_gym")
    bundle, _stderr = zoo_bundles["tqc/PandaReach-v1_1"]
    proc = run_cli("run", str(bundle), "--episodes", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "steps" in proc.stdout


def _sweep(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SWEEP), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_sweep_scores_agree_with_edgekit_report(tmp_path):
    """The sweep's figures are the build's report, the code of `edgekit report`: recomputing the report of
    the swept bundle with `edgekit report --model` gives the same numbers, printed the same way."""
    zoo = tmp_path / "zoo"
    shutil.copytree(ZOO / "ars" / "MountainCar-v0_1", zoo / "ars" / "MountainCar-v0_1")
    out = tmp_path / "sweep"
    args = (str(zoo), "-o", str(out), "--build-args", " ".join((*SMALL[:-1], "3")))
    proc = _sweep(*args)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    row = json.loads((out / "zoo-sweep.json").read_text())["rows"][0]
    assert row["result"] == "built" and row["agent"] == "ars/MountainCar-v0_1"
    bundle = out / row["bundle"]
    report = run_cli("report", str(bundle), "--model", str(zoo / "ars" / "MountainCar-v0_1" / "MountainCar-v0.zip"),
                     "--episodes", "3", "-o", str(tmp_path / "again"))
    assert report.returncode == 0, report.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    discrete = again["validation"]["discrete"]
    assert row["fidelity"]["decisive"] == discrete["decisive_agreement"]
    assert row["fidelity"]["agreement"] == discrete["agreement"]
    assert row["score"] == again["closed_loop"]["normalized_score"]
    headline = row["fidelity"]["headline"]
    assert headline in proc.stdout and headline in report.stdout  # printed the same way
    assert f"score {again['closed_loop']['normalized_score']:.3f}" in proc.stdout
    assert f"score {again['closed_loop']['normalized_score']:.3f}" in report.stdout
    # unchanged inputs and edgekit: the second run builds nothing
    cached = _sweep(*args, timeout=300)
    assert "(cached)" in cached.stdout and cached.returncode == 0
    assert (out / "zoo-sweep.md").read_text().count("ars/MountainCar-v0_1") >= 2


def test_sweep_isolates_each_agent_and_records_refusals(tmp_path):
    """A refused agent is a row with its one-line reason; a build that blows the memory limit is stopped and
    recorded as such, and the sweep goes on and writes its tables."""
    from test_zoo_loading import _legacy_her_zip

    zoo = tmp_path / "zoo"
    (zoo / "her" / "Legacy-v1_1" / "Legacy-v1").mkdir(parents=True)  # a run folder: ENV.zip + ENV/config.yml
    _legacy_her_zip(zoo / "her" / "Legacy-v1_1" / "Legacy-v1.zip")
    shutil.copy(ZOO / "ars" / "Swimmer-v3_1" / "Swimmer-v3" / "config.yml", zoo / "her" / "Legacy-v1_1" / "Legacy-v1")
    shutil.copytree(ZOO / "ars" / "Swimmer-v3_1", zoo / "ars" / "Swimmer-v3_1")
    out = tmp_path / "sweep"
    refused = _sweep(str(zoo), "-o", str(out), "--only", "Legacy")
    assert refused.returncode == 0, refused.stderr + refused.stdout
    killed = _sweep(str(zoo), "-o", str(out), "--only", "Swimmer", "--max-rss-gib", "0.05")
    assert killed.returncode == 0, killed.stderr + killed.stdout
    rows = {r["agent"]: r for r in json.loads((out / "zoo-sweep.json").read_text())["rows"]}
    assert set(rows) == {"ars/Swimmer-v3_1"}  # each run's table holds the agents it was asked for
    swimmer = rows["ars/Swimmer-v3_1"]
    assert swimmer["result"] == "failed" and "GiB of memory" in swimmer["outcome"]["error"]
    legacy = json.loads((out / "rows" / "her__Legacy-v1_1.json").read_text())
    assert legacy["result"] == "refused" and legacy["outcome"]["error_class"] == "UnsupportedModelError"
    assert "HER class" in legacy["outcome"]["error"]
    assert "unsupported (1) | her/Legacy-v1_1" in (refused.stdout)
