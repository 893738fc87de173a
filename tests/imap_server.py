"""A real IMAP server for tests: Debian's Dovecot on a free loopback port, private config.

One server per test session (`dovecot` fixture); each test gets its own user and mailbox
(`mailbox` fixture; any user name logs in with PASSWORD), filled with IMAP APPEND as a mail
server would deliver. When Dovecot is
not installed the tests that need it skip, except under CI (CI set), where they fail.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import pytest

from tests.channel_servers import free_port, tls_certificate

DOVECOT = os.environ.get("PIPECTL_TEST_DOVECOT", "/usr/sbin/dovecot")
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
PASSWORD = "imap-pass-8e1f"  # a test server's password; never a real one
UTF8_USER = "utf8@acme.test"  # the one user whose password is not ASCII
UTF8_PASSWORD = "pässwörd99"  # a test server's password; never a real one

CONFIG = """\
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
mail_fsync = never
maildir_very_dirty_syncs = yes
auth_failure_delay = 0
mail_privileged_group =
first_valid_uid = 1
last_valid_uid = 0
login_trusted_networks = 127.0.0.0/8
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
  chroot =
}}
service anvil {{
  chroot =
  # Dovecot delays each login from an address that failed one, for up to 15 s; tests refuse
  # logins on purpose, so the auth process is kept from the penalty socket (it then skips it).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def dovecot_missing() -> str | None:
    """Why the Dovecot tests cannot run here, or None."""
    if not os.path.exists(DOVECOT):
        return f"dovecot is not installed ({DOVECOT}); apt-get install dovecot-imapd"
    if os.geteuid() != 0:
        return "dovecot's private test server needs root here"
    return None


def need_dovecot() -> None:
    """Skip (or fail under CI) when Dovecot cannot run."""
    reason = dovecot_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs Dovecot: {reason}")
    pytest.skip(reason)


@dataclass
class Mailbox:
    """One user's mailbox on the test server."""

    server: DovecotServer
    user: str
    password: str = PASSWORD

    @property
    def config(self) -> dict:
        """The resolved `channels.email.inbox` settings for this mailbox."""
        return {
            "host": "127.0.0.1",
            "port": self.server.port,
            "security": "none",
            "username": self.user,
            "password": self.password,
            "folders": ["INBOX"],
        }

    def connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.server.port, timeout=10)
        if self.password.isascii():
            imap.login(self.user, self.password)
        else:  # imaplib's LOGIN sends ASCII only
            imap.authenticate("PLAIN", lambda _: f"\0{self.user}\0{self.password}".encode())
        return imap

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        """Deliver messages into a folder (created if missing), as unseen mail."""
        imap = self.connect()
        try:
            if folder != "INBOX":
                imap.create(folder)
            for raw in messages:
                typ, data = imap.append(folder, "", None, raw)
                assert typ == "OK", data
        finally:
            imap.logout()

    def deliver(self, messages: Iterable[bytes]) -> int:
        """Many messages into INBOX at once, the way a local delivery agent writes a Maildir
        (tmp, then rename into new): much faster than APPEND for benchmarks. UIDs follow
        the order Dovecot finds the files in, not necessarily this order."""
        owner = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        home = self.server.root / "mail" / self.user
        maildir = home / "Maildir"
        for path in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            path.mkdir(exist_ok=True)
            os.chown(path, *owner)
        stamp, written = int(time.time()), 0
        for i, raw in enumerate(messages):
            name = f"{stamp}.P{os.getpid()}Q{i}.pipectl-test"
            tmp = maildir / "tmp" / name
            tmp.write_bytes(raw)
            os.chown(tmp, *owner)
            os.rename(tmp, maildir / "new" / name)
            written += 1
        return written

    def flags(self, folder: str = "INBOX") -> dict[int, str]:
        """UID -> flags of every message in a folder (read with EXAMINE: changes nothing)."""
        imap = self.connect()
        try:
            typ, _ = imap.select(f'"{folder}"', readonly=True)
            assert typ == "OK"
            typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
            found = {}
            for item in data or []:
                if not item:
                    continue
                text = item.decode() if isinstance(item, bytes) else item[0].decode()
                m = re.search(r"UID (\d+).*FLAGS \(([^)]*)\)", text) or re.search(
                    r"FLAGS \(([^)]*)\).*UID (\d+)", text
                )
                if m and m.group(1).isdigit():
                    found[int(m.group(1))] = m.group(2)
                elif m:
                    found[int(m.group(2))] = m.group(1)
            return found
        finally:
            imap.logout()

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """What a server restore or migration does: the folder's UIDVALIDITY changes."""
        subprocess.run(
            [DOVEADM, "-c", str(self.server.config), "mailbox", "update", "-u", self.user,
             "--uid-validity", str(value), folder],
            check=True, capture_output=True,
        )  # fmt: skip


class DovecotServer:
    """A running Dovecot with its own config, state and mail under one temporary folder."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are private to root, and mail is
        # written by `nobody`.
        self.root = Path(tempfile.mkdtemp(prefix="pipectl-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()  # plain IMAP, and STARTTLS
        self.tls_port = free_port()  # IMAP over TLS
        # A self-signed certificate for 127.0.0.1; clients trust it through SSL_CERT_FILE.
        self.cert, self.key = tls_certificate(self.root)
        self.config = self.root / "dovecot.conf"
        self.users = count(1)
        (self.root / "mail").mkdir(mode=0o777)
        (self.root / "mail").chmod(0o777)
        self.config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                password=PASSWORD,
                cert=self.cert,
                key=self.key,
            )
        )

    def start(self) -> None:
        (self.root / "passwd").write_text(f"{UTF8_USER}:{{PLAIN}}{UTF8_PASSWORD}\n", "utf-8")
        (self.root / "passwd").chmod(0o644)
        log = (self.root / "start.log").open("wb")  # a file, not a pipe: dovecot daemonizes
        subprocess.run([DOVECOT, "-c", str(self.config)], stdout=log, stderr=log, check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                imaplib.IMAP4("127.0.0.1", self.port, timeout=2).logout()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not start: {self.log()}")

    def stop(self) -> None:
        pid_file = self.root / "run" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            try:
                os.kill(pid, 15)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def new_mailbox(self) -> Mailbox:
        """A fresh user with an empty INBOX: every user name logs in with PASSWORD (a static
        passdb), and a user's mail folder is made at its first login."""
        return Mailbox(self, f"user{next(self.users)}@acme.test")

    def utf8_mailbox(self) -> Mailbox:
        """The user whose password is not ASCII (a passwd-file passdb before the static one)."""
        return Mailbox(self, UTF8_USER, UTF8_PASSWORD)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    need_dovecot()
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mailbox(dovecot: DovecotServer) -> Mailbox:
    return dovecot.new_mailbox()
