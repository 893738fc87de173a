"""Jinja2 in a sandbox: lead data is data, undefined variables are errors."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_REPEAT = 100_000  # characters or items a template may build with `*`


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, also refusing `'x' * 10**9` and `9**9**9`, which would stall a tick."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and right > 1024 and abs(left) > 1:
            raise SecurityError("exponent too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_REPEAT:
                    raise SecurityError(f"repetition too long (over {MAX_REPEAT})")
        return super().call_binop(context, operator, left, right)


ENV = Sandbox(undefined=StrictUndefined, autoescape=False)
# HTML bodies escape lead data, so a first name like "<a href=...>" shows as text.
HTML_ENV = Sandbox(undefined=StrictUndefined, autoescape=True)


def check_template(source: str) -> str | None:
    """The syntax error in a template, or None; for `validate`."""
    try:
        ENV.parse(source)
    except TemplateError as e:
        line = f" (template line {e.lineno})" if getattr(e, "lineno", None) else ""
        return f"template error: {e.message}{line}"
    return None


@lru_cache(maxsize=1024)
def _compiled(source: str, html: bool = False):
    template = (HTML_ENV if html else ENV).from_string(source)
    # Its globals are a ChainMap over the environment's, which every render copies; the
    # same names in one plain dict render the same in half the time (5 us, not 11).
    template.globals = dict(template.globals)
    return template


def render(source: str, context: dict[str, Any], *, html: bool = False) -> str:
    """Render `source`; raises jinja2.TemplateError (undefined variable, sandbox refusal)."""
    return _compiled(source, html).render(context)
