from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    """A new connection opens only while the database files are those this process opened
    first: one opened after an operator deleted the WAL could lose what is in it
    (counter/store/data_files.py)."""

    def get_new_connection(self, conn_params: dict) -> base.Database.Connection:
        from counter.store.data_files import data_files_guard  # the models are loaded by now

        data_files_guard()
        return super().get_new_connection(conn_params)
