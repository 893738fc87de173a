"""The tick: one pass of lock -> recover -> admit -> claim -> perform -> record, within budget.

    run.py       the pass itself (`tick`), sending through worker threads, writing results
    lock.py      the tick lock: one tick per database at a time (a kernel flock)
    dispatch.py  claimed sends waiting for a worker; fairness between accounts
    workers.py   the worker threads: claimed sends in, results out
    limits.py    what an account may still send under its rates; sharing a batch fairly
    windows.py   send windows: when a window next opens, in the right time zone
    retry.py     how long to wait before a send is tried again

The one-writer rule: worker threads only render and send; the tick's own thread is the one
database writer (`Database.transaction` asserts it when `check_writer` is set, as in tests).
Data flows one way: the store returns typed rows (`pipectl/store/rows.py`) and takes plain
values; `limits` and `windows` are pure functions, the only part of this package the store uses.
"""
