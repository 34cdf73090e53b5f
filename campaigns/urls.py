"""Public routes of the campaigns app (unsubscribe links)."""

from django.urls import path

from campaigns.views import UnsubscribeView

app_name = "campaigns"

urlpatterns = [
    path("unsubscribe/<str:token>/", UnsubscribeView.as_view(), name="unsubscribe"),
]
