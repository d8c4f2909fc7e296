from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.db.backends.signals import connection_created


def _wait_cooperatively(sender: object, connection: object, **kwargs: object) -> None:
    from counter.store.locks import sqlite_retry_wrapper

    if sqlite_retry_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(sqlite_retry_wrapper)


class CounterConfig(AppConfig):
    name = "counter"
    verbose_name = "Visits"

    def ready(self) -> None:
        from counter.login_throttle import login_failures_clear  # it needs the models

        connection_created.connect(_wait_cooperatively)
        user_logged_in.connect(login_failures_clear)
