"""`load_config`: pipelines.yaml -> Config, with every problem listed as file:line at once."""

from __future__ import annotations

from pathlib import Path

from yaml.nodes import MappingNode, Node

from ..errors import ConfigError
from ..yaml_nodes import NodeReader, compose, kind
from .accounts import AccountsReader
from .channels import ChannelsReader
from .checks import check
from .hooks import HooksReader
from .model import Config, yaml_keys
from .pipelines import PipelinesReader
from .windows import WindowsReader

TOP_KEYS = yaml_keys(Config)
REQUIRED = ("version", "accounts", "pipelines")


def load_config(path: Path) -> Config:
    """Read and check a pipelines YAML; raises ConfigError listing every problem at once."""
    root = compose(path)
    nodes = NodeReader(path)
    try:
        config = read(nodes, root)
        nodes.problems += check(config)
    except RecursionError:
        raise ConfigError([f"{path}:1: YAML nested too deeply to be a pipelines file"]) from None
    nodes.raise_problems()
    return config


def read(nodes: NodeReader, root: Node | None) -> Config:
    """The file's shape: version, default channels, accounts, pipelines, then hooks."""
    path = nodes.path
    if root is None:
        nodes.problem(None, "the file is empty; it needs version: 1, accounts and pipelines")
        return Config(path=path)
    top = nodes.mapping(root, TOP_KEYS, "the file", extensions=True)
    for required in REQUIRED:
        if required not in top and isinstance(root, MappingNode):
            nodes.problem(root, f"missing top-level key '{required}'")
    if "version" in top and nodes.value(top["version"]) not in (1, "1"):
        nodes.problem(top["version"], f"version must be 1, not {kind(top['version'])}")
    channels = ChannelsReader(nodes)
    windows = WindowsReader(nodes)
    defaults = channels.channels(top["channels"], "channels") if "channels" in top else {}
    accounts = AccountsReader(nodes, channels, windows).accounts(top.get("accounts"), defaults)
    pipelines = PipelinesReader(nodes, windows, path.parent.resolve()).pipelines(
        top.get("pipelines"), {a.key: a for a in accounts}
    )
    hooks = HooksReader(nodes, channels).hooks(top.get("hooks"), {a.key for a in accounts})
    return Config(path=path, accounts=accounts, pipelines=pipelines, channels=defaults, hooks=hooks)
