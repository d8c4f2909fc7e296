from django.urls import path

from counter import views

app_name = "counter"

urlpatterns = [
    path("", views.home, name="home"),
    path("visits", views.visits, name="visits"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("cluster", views.cluster, name="cluster"),
]
