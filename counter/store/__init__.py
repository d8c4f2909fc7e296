"""The pod's data and everything that touches it, as a stack whose modules import only those
below them (`make lint` checks it; docs/how-it-works.md, "Architecture"):

- startup.py, schema.py: `prepare`'s checks, migrations and their snapshots;
- visits_file.py: the `visits` file, kept up to date by every worker;
- visits.py: counting and reading the count; sqlite/: the SQLite engine Django opens;
- guard.py: the watch over the database's files, which stops counting when they are lost;
- snapshots.py: consistent copies of the database, checked, staged and applied;
- database.py: the connection the store's statements run on, the writer lock;
- locks.py: waiting for locks without stalling a gevent worker;
- files.py: every file of the data directory, named in one place.
"""
