"""Public routes of the campaigns app (unsubscribe links)."""

urlpatterns: list = []
