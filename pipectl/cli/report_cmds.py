"""status, actions list."""

from __future__ import annotations
