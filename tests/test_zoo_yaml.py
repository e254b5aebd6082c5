"""rl-zoo3's YAML files with their aliases bounded (issue 17, item 7): a 536-byte alias bomb in
``env_kwargs.yml``, ``config.yml`` or ``args.yml`` used to keep a build walking 20**7 nodes for minutes."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_one_line_error, run_cli
from fuzz_tally import time_limit

from edgekit.core.errors import ModelFileError
from edgekit.host.loading.zoo_config import MAX_NODES, read_env_kwargs, read_zoo_config

ZOO_AGENT = REPO / "tests" / "data" / "rl-zoo-agents" / "ppo" / "CartPole-v1_1"


def alias_bomb(fan_out: int = 20, levels: int = 7) -> str:
    """``levels`` nested lists of ``fan_out`` aliases each: fan_out**levels values in a few hundred bytes."""
    lines = ["a: &a [" + ", ".join(['"lol"'] * fan_out) + "]"]
    for depth in range(1, levels):
        name, previous = chr(ord("a") + depth), chr(ord("a") + depth - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "alias bomb": alias_bomb(),
    "merge-key bomb": "a: &a {x0: 1, x1: 2, x2: 3, x3: 4, x4: 5, x5: 6, x6: 7, x7: 8, x8: 9, x9: 0}\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 30) + "]\n" for i in range(5)),
    "recursive alias": "a: &a [1, *a]\n",
    "recursive mapping": "a: &a {b: *a}\n",
    "deep nesting": "a: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "python tag": "a: !!python/object/apply:os.system ['true']\n",
    "not utf-8": "a: \udcff\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("reader", [read_env_kwargs, read_zoo_config])
def test_hostile_yaml_is_a_quick_clean_error(tmp_path, case, reader):
    path = tmp_path / "env_kwargs.yml"
    path.write_bytes(HOSTILE[case].encode("utf-8", "surrogateescape"))
    start = time.perf_counter()
    with time_limit(10), pytest.raises(ModelFileError):
        reader(path)
    assert time.perf_counter() - start < 2


def test_aliases_within_the_bound_still_read(tmp_path):
    path = tmp_path / "config.yml"
    path.write_text("base: &base {gamma: 0.99, n_steps: 32}\nrun: {<<: *base, n_steps: 64}\n"
                    "list: &l [1, 2, 3]\nagain: [*l, *l]\n" + alias_bomb(fan_out=10, levels=3))
    data = read_zoo_config(path)
    assert data["run"] == {"gamma": 0.99, "n_steps": 64} and data["again"] == [[1, 2, 3], [1, 2, 3]]
    assert len(data["c"]) == 10 and MAX_NODES >= 10**3


@pytest.mark.parametrize("member", ["env_kwargs.yml", "config.yml"])
def test_a_zoo_folder_with_an_alias_bomb_stops_at_once(tmp_path, member):
    folder = tmp_path / "CartPole-v1_1"
    shutil.copytree(ZOO_AGENT, folder)
    (folder / "CartPole-v1" / member).write_text(alias_bomb())
    start = time.perf_counter()
    proc = run_cli("build", str(folder), "-o", str(tmp_path / "b"), timeout=120)
    assert_one_line_error(proc, member, "aliases")
    assert time.perf_counter() - start < 60
    assert not Path(tmp_path / "b").exists()
