from django.urls import include, path

from . import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("test/mint", views.mint),
    path("test/status", views.status),
    path("test/health", views.health),
]
