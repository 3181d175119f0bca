"""`seal ingest`: learn from news feeds, folders and URL lists for days.

    sources.py   what a source yields: entries of RSS/Atom/JSON feeds, files of a folder, URLs
    fetch.py     retry backoff (HTTP itself: agent/web.py, the one fetch path chat shares)
    dedup.py     canonical URLs, content hashes, near-duplicate stories (skip or learn the change)
    schedule.py  when to learn: batches, the compute budget, the queue bound (newest first)
    pipeline.py  one item's way through the ledger: seen -> stored -> self_edited -> learned
    run.py       the command: setup -> run -> report, signals, logs, status line, metrics

Every item's state lives in the ledger (`ingest_items`); "learned" comes from the update that
committed the adapter, in the same transaction, so a killed run neither loses nor relearns work.
"""
