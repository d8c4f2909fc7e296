"""gunicorn's logger (its error log and access log) with VISITS_LOG_FORMAT=json: the same JSON
objects as the app's log (counter/log.py). gunicorn.conf.py selects it."""

from gunicorn import glogging

from counter.log import JsonFormatter


class GunicornLogger(glogging.Logger):
    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())
