"""Push devices for campaigns: Web Push subscription endpoint, device admin, VAPID key command."""
