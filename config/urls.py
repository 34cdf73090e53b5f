"""URL routes: the admin (the product's UI) and the public campaign endpoints."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("push/", include("campaigns.push.urls")),
    path("", include("campaigns.feedback.urls")),  # ESP webhooks: /anymail/<esp>/tracking/
    path("", include("campaigns.urls")),
]
