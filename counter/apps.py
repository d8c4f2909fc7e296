from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class CounterConfig(AppConfig):
    name = "counter"
    verbose_name = "Visits"

    def ready(self) -> None:
        # Imported once the app registry is ready: the login throttle needs the models.
        from counter.login_throttle import login_failures_clear

        user_logged_in.connect(login_failures_clear)
