"""Django's SQLite backend, with a check of the database files before each new connection."""
