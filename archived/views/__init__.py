"""The operator's views of the archive: `archivectl status` and `archivectl study list|show`.

Each view gathers a plain dict (what ``--json`` prints) and renders it for a person: fit to
the terminal, UIDs cut to the end that tells them apart (``--wide`` shows everything),
times in local time with relative terms. Nothing here writes the index.
"""
