"""`pipectl report`: how each pipeline is doing over a period.

period.py    --since/--until and the day or week buckets, in the account's time zone
figures.py   the store's counters -> one dict per pipeline (the --json shape)
text.py      that dict on a terminal (rich bars) or as plain lines when piped
tabular.py   that dict as CSV rows, for spreadsheets
html.py      that dict as one self-contained page with inline SVG charts
"""
