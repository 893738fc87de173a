#!/usr/bin/env bash
# `make demo`: the example pipelines and leads, then ticks at simulated times, in ./demo-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIPECTL_DB=demo-run/pipectl.db
pipectl=.venv/bin/pipectl
rm -rf demo-run && mkdir demo-run

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step $pipectl validate pipelines.example.yaml
step $pipectl apply pipelines.example.yaml
step $pipectl apply pipelines.example.yaml
step $pipectl leads import examples/leads-acme.csv --account acme --pipeline adwords
step $pipectl leads import examples/leads-globex.csv --account globex --pipeline solar-webinar
step $pipectl leads list --account acme --limit 5

# Monday 2027-03-01 10:00 in New York: the first emails go out.
step $pipectl tick --now 2027-03-01T15:00:00Z
# Sarah replies to the email: she moves to "responded". David texts STOP: he opts out.
step $pipectl reply --account acme --email sarah.k.lee@gmail.com --body "Yes, please call me" --at 2027-03-01T16:30:00Z
step $pipectl reply --account acme --phone +12125550198 --channel sms --body STOP --at 2027-03-01T17:00:00Z
# An hour after her reply, Sarah gets "Next steps".
step $pipectl tick --now 2027-03-01T17:31:00Z
# Two days later the leads that did not reply get a text (their wait_for_reply timed out)...
step $pipectl tick --now 2027-03-03T15:00:01Z
# ...and a day after that, with no reply, they are lost.
step $pipectl tick --now 2027-03-04T15:00:02Z
step $pipectl leads show sarah.k.lee@gmail.com
step $pipectl status --now 2027-03-04T15:01:00Z

echo
echo "What was sent is in demo-run/outbox/ ($(ls demo-run/outbox | wc -l) messages). The first email:"
first=$(ls demo-run/outbox/*.eml | head -n 1)
sed -e 's/^/    /' "$first"
