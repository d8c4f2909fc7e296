"""The pod's data and everything that touches it: counting (visits.py), the `visits` file,
snapshots, the watch over the database's files, the start-up checks, the SQLite engine, the
cooperative locks; files.py names every file of the data directory."""
