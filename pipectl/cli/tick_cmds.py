"""tick, run, reply, replies import, retry."""

from __future__ import annotations
