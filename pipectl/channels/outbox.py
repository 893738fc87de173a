"""The outbox channel: each message as a file, for demos, tests and dry runs of real pipelines."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import is_no_space
from . import ChannelError, Message
from .email import POLICY, build_mime
from .resolve import Resolved

_SMTP_POLICY = POLICY.clone(linesep="\r\n")
_SMTPUTF8_POLICY = _SMTP_POLICY.clone(utf8=True)


class OutboxSender:
    """Writes `{action_id:08d}-{channel}.eml|.json`; a repeated send of an action overwrites it."""

    def __init__(self, outbox_dir: Path, resolved: Resolved):
        self.outbox_dir = Path(outbox_dir)
        self.resolved = resolved

    def send(self, message: Message) -> str | None:
        """Write the message atomically; returns the file name."""
        if message.channel == "email":
            mime = build_mime(message, self.resolved.config)
            # An address beyond ASCII before the @ goes as UTF-8, as SMTPUTF8 sends it.
            policy = _SMTP_POLICY if message.to.isascii() else _SMTPUTF8_POLICY
            data, suffix = mime.as_bytes(policy=policy), "eml"
        else:
            record = {
                "to": message.to,
                "from": self.resolved.config.get("from"),
                "body": message.body,
                "lead_id": message.lead_id,
                "action_id": message.action_id,
            }
            data, suffix = (
                (json.dumps(record, ensure_ascii=False, indent=2) + "\n").encode(),
                "json",
            )
        name = f"{message.action_id:08d}-{message.channel}.{suffix}"
        try:
            write_atomic(self.outbox_dir / name, data)
        except OSError as e:
            if is_no_space(e):
                raise ChannelError(
                    f"channel {message.channel}: outbox: disk full: cannot write {self.outbox_dir}"
                ) from None
            raise ChannelError(f"channel {message.channel}: outbox: {e}") from None
        return name

    def close(self) -> None:
        """Nothing to close: files are complete when send returns."""


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
