"""pipelines.yaml -> frozen dataclasses; every check, with file and line numbers.

model.py     the dataclasses (the contract with `apply` and the tick), whose fields are the
             keys each section of the YAML allows
load.py      `load_config`: the file's shape, then each section's reader, then the checks
accounts.py  accounts and limits;  channels.py  channels, inboxes, secrets and ${VAR}
windows.py   send windows and retries;  pipelines.py  pipelines, stages, actions, templates
checks.py    stage references and move loops, on the finished Config
"""

from __future__ import annotations

from .channels import VAR_REFERENCE, is_address
from .load import load_config
from .model import (
    ACTION_TYPES,
    OUTCOMES,
    SEND_TYPES,
    Account,
    Action,
    Config,
    Limits,
    Pipeline,
    Stage,
    readable,
)

__all__ = [
    "ACTION_TYPES",
    "OUTCOMES",
    "SEND_TYPES",
    "VAR_REFERENCE",
    "Account",
    "Action",
    "Config",
    "Limits",
    "Pipeline",
    "Stage",
    "is_address",
    "load_config",
    "readable",
]
