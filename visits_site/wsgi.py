import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from visits_site import backup_metrics
from visits_site.absolute_form import AbsoluteFormHost
from visits_site.body_guard import RequestBodyGuard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "visits_site.settings")

application = AbsoluteFormHost(
    RequestBodyGuard(get_wsgi_application(), max_body=settings.VISITS_MAX_BODY_BYTES)
)
if settings.VISITS_BACKUP_METRICS_URL:
    application = backup_metrics.by_port(
        application,
        port=settings.VISITS_BACKUP_METRICS_PORT,
        url=settings.VISITS_BACKUP_METRICS_URL,
    )
