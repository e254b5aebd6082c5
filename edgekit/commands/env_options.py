"""The options that name an environment (``--env``, ``--env-module``, ``--env-kwargs``), shared by commands."""

from __future__ import annotations

import argparse

from edgekit.core.env_spec import EnvOverride, parse_env_kwargs


def add_env_arguments(p: argparse.ArgumentParser, env_help: str, optional_value: bool = False) -> None:
    """``optional_value``: ``--env`` alone means "the bundle's env" (``edgekit run``)."""
    extra = {"nargs": "?", "const": ""} if optional_value else {}
    p.add_argument("--env", dest="env_id", default=None, metavar="ENV", help=env_help, **extra)
    p.add_argument("--env-module", default=None, metavar="MODULE",
                   help="import this module first (it registers the env id), e.g. my_package.envs")
    p.add_argument("--env-kwargs", default=None, metavar="JSON",
                   help="""keyword arguments for the env's constructor, as a JSON object, e.g. '{"g": 9.81}'""")


def given_env(args: argparse.Namespace) -> EnvOverride:
    """What the command line says of the env (all None: use the bundle's)."""
    kwargs = parse_env_kwargs(args.env_kwargs)
    return EnvOverride(env_id=args.env_id or None, module=args.env_module, kwargs=kwargs)
