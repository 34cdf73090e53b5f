"""Delivery feedback: what happens to a message after the channel handed it over.

ESP webhooks (through django-anymail's ``tracking`` signal, :mod:`.webhooks`) and bounce
messages read from a mailbox (:mod:`.mailbox`, parsed by :mod:`.dsn`) become
:class:`~campaigns.feedback.models.DeliveryEvent` rows on the matching delivery
(:mod:`.matching`); hard bounces, complaints, ESP unsubscribes and repeated soft bounces put
the address on the :class:`~campaigns.feedback.models.Suppression` list (:mod:`.services`),
which the ``campaigns_suppression`` policy reads (``campaigns/policies/suppression.py``).
Statistics per campaign and per run: :mod:`.selectors`. README: "Delivery feedback".

The models belong to the ``campaigns`` app (``campaigns/models.py`` imports them); this package
is not an app of its own. Its ``__init__`` imports nothing, so that ``campaigns.models`` can
import :mod:`.models` without pulling anything else in.
"""
