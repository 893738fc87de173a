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
# Two days later the leads that did not reply get a text (their wait_for_reply timed out)...
step $pipectl tick --now 2027-03-03T15:00:01Z
# ...and a day after that, with no reply, they are lost.
step $pipectl tick --now 2027-03-04T15:00:02Z
step $pipectl status

echo
echo "What was sent is in demo-run/outbox/ ($(ls demo-run/outbox | wc -l) messages). The first email:"
first=$(ls demo-run/outbox/*.eml | head -n 1)
sed -e 's/^/    /' "$first"
