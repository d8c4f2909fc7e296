"""Django's SQLite backend, with the store's connection set-up: the guard's check of the
database files before each new connection, and the cooperative retry of every statement."""
