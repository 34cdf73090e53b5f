"""Routes of the push endpoints (included under /push/ by config/urls.py)."""

from django.urls import path

from campaigns.push import views

app_name = "push"

urlpatterns = [
    path("subscriptions/", views.subscriptions, name="subscriptions"),
    path("vapid-public-key/", views.vapid_key, name="vapid_public_key"),
]
