"""Email addresses as they go on the wire: the domain in its ASCII (IDNA) form, so any server
takes it; only a local part beyond ASCII needs the server's SMTPUTF8."""

from __future__ import annotations

from functools import lru_cache


def mailbox_address(value: str) -> str:
    """A sender mailbox's identity: the lower-case address of its `from`."""
    from email.utils import getaddresses

    return getaddresses([value])[0][1].strip().lower() if value else ""


class AddressError(ValueError):
    """An address whose domain has no ASCII form."""


@lru_cache(maxsize=4096)
def wire_address(address: str) -> str:
    """`user@exämple.com` -> `user@xn--exmple-cua.com`; the local part is kept as it is."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        raise AddressError(f"{address!r} has no domain")
    return f"{local}@{ascii_domain(domain)}"


def ascii_domain(domain: str) -> str:
    """The IDNA 2008 (UTS 46) form of a domain, as browsers and mail servers read it."""
    if domain.isascii():
        return domain
    import idna  # loads only for the rare address that needs it

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise AddressError(f"the domain {domain!r} has no ASCII form: {e}") from None


def ascii_domains(header_value: str) -> str:
    """An address header (`Acme <sales@äcme.example>`) with every domain in its ASCII form."""
    if header_value.isascii():
        return header_value
    from email.utils import formataddr, getaddresses

    pairs = getaddresses([header_value])
    if not all("@" in address for _, address in pairs):
        return header_value
    try:
        return ", ".join(formataddr((name, wire_address(address))) for name, address in pairs)
    except (AddressError, UnicodeError):  # a local part beyond ASCII: the header says it as is
        return header_value
