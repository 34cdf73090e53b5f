"""The Django app around ACE: message types, recipients, campaigns and the delivery log."""
