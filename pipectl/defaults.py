"""Every default the product applies, in one place: read by config and code alike.

Plain values only, no imports from the rest of pipectl, so the tick can read them without
loading the YAML reader.
"""

from __future__ import annotations

# -- accounts and limits ------------------------------------------------------------------------

TIMEZONE = "UTC"  # an account's send windows, when it names none
CONCURRENCY = 8  # an account's actions in flight at once (also the column's DEFAULT in m001)
ACTIVE_LEADS: int | None = None  # no limit: every enrolled lead is active

# -- actions ------------------------------------------------------------------------------------

ON_FAILURE = "stop"  # a failed action's stage and pipeline say nothing else
RETRY_ATTEMPTS = 5
RETRY_BACKOFF = 60  # seconds before the first retry; doubled each time, with jitter
RETRY_MAX_BACKOFF = 3600
RETRY = {"attempts": RETRY_ATTEMPTS, "backoff": RETRY_BACKOFF, "max_backoff": RETRY_MAX_BACKOFF}
SEND_WINDOW_START, SEND_WINDOW_END = "00:00", "24:00"  # a window that names no hours

# -- channels -----------------------------------------------------------------------------------

TRANSPORT = "outbox"  # files on disk: nothing configured never reaches a real person
TRANSPORTS = {"email": ("smtp", "outbox"), "sms": ("twilio", "webhook", "outbox")}
SECURITY = ("starttls", "ssl", "none")
SMTP_SECURITY = "starttls"
SMTP_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
SEND_TIMEOUT = 30.0  # seconds: SMTP and HTTP reads
CONNECT_TIMEOUT = 10.0  # seconds: an HTTP provider's connect
EMAIL_FROM = "pipectl@pipectl.local"  # the outbox's sender when none is configured
# A failing channel's probe: the next one waits as long as the channel has been failing,
# between PROBE_BACKOFF and PROBE_MAX_BACKOFF seconds, with jitter (or the server's longer
# Retry-After), so a provider that is down is not sent the same message every minute.
PROBE_BACKOFF = 60
PROBE_MAX_BACKOFF = 900
SENDER_OWN = ("daily_limit", "warmup", "inbox")  # a sender mailbox's keys that are not SMTP's

# Secrets: settings whose value must be a ${VAR} in the YAML and is hidden from every message.
# Channels today have two (`password` of email and inbox, `auth_token` of Twilio); the rest are
# the usual names of other providers' and hooks' secrets, and names ending like them.
SECRET_KEYS = ("password", "auth_token", "api_key", "token", "secret")
SECRET_SUFFIXES = ("password", "token", "secret", "_key")

# -- importing ----------------------------------------------------------------------------------

MAX_LISTED = 50  # invalid rows and ignored values an import's summary lists (all go to --report)

# -- inbound ------------------------------------------------------------------------------------

IMAP_SECURITY = "ssl"
IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}
IMAP_FOLDERS = ("INBOX",)
SMS_INBOUND = True  # twilio: poll for inbound texts and delivery reports unless told not to
INBOUND_TIMEOUT = 30.0  # seconds at most for one read of a mailbox or the provider's API
INBOUND_BODY = 10_000  # characters kept of an inbound message's new text
TWILIO_API = "https://api.twilio.com"  # Twilio's `base_url` when the YAML names none

# -- webhooks -----------------------------------------------------------------------------------

HOOK_TIMEOUT = 10.0  # seconds for one POST (connect and read)
HOOK_RETRY = {"attempts": 15, "backoff": 60, "max_backoff": 3600}  # about 8 hours in all
HOOK_BATCH = 100  # events a hook is sent per tick turn, in order
HOOK_WORKERS = 4  # hooks posted to at once (one POST in flight per hook: events go in order)

# -- the tick -----------------------------------------------------------------------------------

WORKERS = 16  # send threads
MAX_SECONDS = 50  # a tick keeps claiming while work is due, up to this long
SYNC_SECONDS = 15  # the inbound sync a tick runs first
ADMIT_BATCH = 50_000  # queued enrollments admitted per transaction (a tick's turn)
RUN_INTERVAL = 60  # `pipectl run`: seconds between ticks
