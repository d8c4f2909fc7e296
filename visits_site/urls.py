from django.conf import settings
from django.contrib import admin
from django.urls import include, path

admin.site.site_header = f"app-python admin · pod {settings.POD_NAME}"
admin.site.site_title = f"app-python ({settings.POD_NAME})"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("counter.urls")),
]
