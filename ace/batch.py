"""
:mod:`ace.batch` sends many messages at once (beyond the reference; used by campaigns).

:class:`BatchSender` splits the work in two phases:

* :meth:`BatchSender.prepare` (CPU): expiry, policies, channel choice and rendering. Templates
  are looked up once per (channel, app_label, name, language) for the life of the sender, the
  translation is activated once per language, not once per message, and what does not depend
  on the recipient renders once per batch (:mod:`ace.batch_render`).
* :meth:`BatchSender.deliver` (network): each channel's items go to one
  :class:`~ace.channel.ChannelSession`, kept open until the sender closes (one SMTP
  connection for the whole batch). A recoverable error comes back as a RETRY outcome with its
  ``next_attempt_time``; nothing sleeps.

Each message may carry an opaque tag (``tags=``, parallel to the messages): every prepared
item and every outcome of that message carries it, so callers match results back by tag.

Example::

    with BatchSender() as sender:
        outcomes = sender.send(messages, tags=[row.pk for row in rows])
    retry = [o.tag for o in outcomes if o.status is OutcomeStatus.RETRY]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from django.utils import translation

from ace import policy, presentation
from ace.ace import channel_types_to_try, normalize_channel_types, route
from ace.batch_render import RenderBatch
from ace.channel import (
    Channel,
    ChannelMap,
    ChannelSession,
    ChannelType,
    channels,
)
from ace.errors import ChannelError, TemplateNotFoundError
from ace.message import Message
from ace.outcome import DeliveryOutcome, OutcomeStatus, expiry_reason, would_expire
from ace.utils.date import get_current_time
from ace.utils.signals import send_ace_message_failed_signal, send_ace_message_sent_signal

log = logging.getLogger(__name__)

SENDER_CLOSED = "This BatchSender is closed"
TAGS_MISMATCH = "tags must have one entry per message ({tags} tags for {messages} messages)"


@attrs.define
class PreparedDelivery:
    """A message rendered for one channel, ready for the network; ``tag`` is the message's
    tag (see :meth:`BatchSender.prepare`), passed on to its outcome."""

    message: Message
    channel_type: ChannelType
    channel_name: str
    channel: Channel
    rendered: object
    tag: object = None


class BatchSender:
    """
    Sends sequences of messages, reusing one open session (connection) per channel.

    Use it as a context manager, or call :meth:`close`: every session is closed on exit.

    Args:
        limit_to_channels: Only these channel types are used (``None``: all).
    """

    def __init__(self, *, limit_to_channels: Iterable[ChannelType] | None = None) -> None:
        self.limit_to_channels = normalize_channel_types(limit_to_channels)
        self._sessions: dict[str, ChannelSession] = {}
        # (channel name, channel type, app_label, name, language) -> templates, or the
        # error message of the TemplateNotFoundError to raise again.
        self._templates: dict[tuple[Any, ...], dict[str, Any] | str] = {}
        self._closed = False

    def __enter__(self) -> BatchSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every open channel session."""
        self._closed = True
        sessions, self._sessions = self._sessions, {}
        for name, session in sessions.items():
            try:
                session.close()
            except Exception:  # closing must not hide the batch's results
                log.exception("Error while closing the %s session", name)

    # Preparation -------------------------------------------------------------------------

    def prepare(
        self, messages: Iterable[Message], *, tags: Sequence[object] | None = None
    ) -> tuple[list[PreparedDelivery], list[DeliveryOutcome]]:
        """
        Expiry check, policies, channel choice and rendering for each message.

        Args:
            messages: The messages to prepare.
            tags: Opaque values parallel to ``messages`` (default: ``None`` for each); every
                prepared item and every outcome of a message carries its tag.

        Raises:
            ValueError: If ``tags`` does not have one entry per message.

        Returns:
            The deliveries ready for the network, and the outcomes already decided (DENIED
            with the policy, RETRY with ``deferred`` set when a policy postponed the message
            to its ``defer_until``, EXPIRED, FAILED e.g. for a missing template), both in the
            order of ``messages``.
        """
        if self._closed:
            raise RuntimeError(SENDER_CLOSED)
        messages = list(messages)
        if tags is None:
            tags = [None] * len(messages)
        elif len(tags) != len(messages):
            raise ValueError(TAGS_MISMATCH.format(tags=len(tags), messages=len(messages)))
        channel_map = channels()
        channel_types = channel_types_to_try(self.limit_to_channels, channel_map)
        now = get_current_time()
        default_language = translation.get_language()
        groups: dict[str | None, list[tuple[int, Message, object]]] = {}
        for index, (message, tag) in enumerate(zip(messages, tags, strict=True)):
            language = message.language or default_language
            groups.setdefault(language, []).append((index, message, tag))

        prepared: list[tuple[int, PreparedDelivery]] = []
        decided: list[tuple[int, DeliveryOutcome]] = []
        for language, group in groups.items():
            render_batch = RenderBatch([message for _index, message, _tag in group])
            with translation.override(language):
                for index, message, tag in group:
                    for item in self._prepare_one(
                        message, tag, channel_types, channel_map, now, language, render_batch
                    ):
                        if isinstance(item, PreparedDelivery):
                            prepared.append((index, item))
                        else:
                            decided.append((index, item))
        prepared.sort(key=lambda pair: pair[0])
        decided.sort(key=lambda pair: pair[0])
        return [item for _i, item in prepared], [item for _i, item in decided]

    def _prepare_one(
        self,
        message: Message,
        tag: object,
        channel_types: list[ChannelType],
        channel_map: ChannelMap,
        now: Any,
        language: str | None,
        render_batch: RenderBatch | None = None,
    ) -> list[PreparedDelivery | DeliveryOutcome]:
        if not channel_types:
            return []
        results: list[PreparedDelivery | DeliveryOutcome] = []
        if would_expire(message.expiration_time, now):
            for channel_type in channel_types:
                outcome = DeliveryOutcome(
                    message=message,
                    channel_type=channel_type,
                    status=OutcomeStatus.EXPIRED,
                    reason=expiry_reason(expired_at=message.expiration_time),
                    tag=tag,
                )
                _signal_failure(None, outcome)
                results.append(outcome)
            return results

        decision = policy.decide(message)
        for channel_type, target in route(message, channel_types, decision, tag=tag):
            if isinstance(target, DeliveryOutcome):
                results.append(target)
                continue
            channel = target
            channel_name = channel_map.name_of(channel) or type(channel).__name__
            try:
                renderer = presentation.get_renderer(channel_type)
                templates = self._templates_for(renderer, channel, channel_name, message, language)
                if render_batch is not None:  # the shared parts render once per batch
                    templates = render_batch.templates(templates, channel, message)
                rendered = renderer.render_templates(templates, channel, message)
            except ChannelError as error:
                outcome = DeliveryOutcome.from_error(
                    message, channel_type, error, channel_name, tag=tag
                )
            except Exception as error:  # one bad context must not sink the whole batch
                log.exception("Rendering %s for %s failed", message.log_id, channel_name)
                outcome = DeliveryOutcome(
                    message=message,
                    channel_type=channel_type,
                    status=OutcomeStatus.FAILED,
                    channel_name=channel_name,
                    reason=f"Rendering failed: {error}",
                    exception_type=type(error).__name__,
                    tag=tag,
                )
            else:
                results.append(
                    PreparedDelivery(
                        message=message,
                        channel_type=channel_type,
                        channel_name=channel_name,
                        channel=channel,
                        rendered=rendered,
                        tag=tag,
                    )
                )
                continue
            _signal_failure(channel, outcome)
            results.append(outcome)
        return results

    def _templates_for(
        self,
        renderer: Any,
        channel: Channel,
        channel_name: str,
        message: Message,
        language: str | None,
    ) -> dict[str, Any]:
        key = (channel_name, channel.channel_type, message.app_label, message.name, language)
        cached = self._templates.get(key)
        if cached is None:
            try:
                cached = renderer.get_templates(channel, message)
            except TemplateNotFoundError as error:
                cached = str(error)
            self._templates[key] = cached
        if isinstance(cached, str):
            raise TemplateNotFoundError(cached)
        return cached

    # Delivery ----------------------------------------------------------------------------

    def deliver(self, prepared: Sequence[PreparedDelivery]) -> list[DeliveryOutcome]:
        """
        Deliver prepared messages; returns one outcome per item, in the same order.

        Items are grouped by channel and handed to that channel's open session. Recoverable
        errors come back as RETRY with ``next_attempt_time`` (EXPIRED if that is past the
        message's expiration); a lost connection after the message went out comes back as
        UNKNOWN (never retried). Each outcome carries its item's ``tag``. Sends
        ``ACE_MESSAGE_SENT`` / ``ACE_MESSAGE_FAILED``.
        """
        if self._closed:
            raise RuntimeError(SENDER_CLOSED)
        outcomes: list[DeliveryOutcome | None] = [None] * len(prepared)
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(item.channel_name, []).append(index)

        for channel_name, indices in groups.items():
            session = self._session(channel_name, prepared[indices[0]].channel)
            items = [(prepared[i].message, prepared[i].rendered) for i in indices]
            results = session.deliver_many(items)
            if len(results) != len(items):
                raise RuntimeError(
                    f"{type(session).__name__}.deliver_many returned {len(results)} results "
                    f"for {len(items)} items"
                )
            for index, error in zip(indices, results, strict=True):
                outcomes[index] = self._outcome(prepared[index], error)
        return [outcome for outcome in outcomes if outcome is not None]

    def send(
        self, messages: Iterable[Message], *, tags: Sequence[object] | None = None
    ) -> list[DeliveryOutcome]:
        """Prepare and deliver; the outcomes follow the order of ``messages`` and carry the
        message's tag (``tags`` as for :meth:`prepare`)."""
        messages = list(messages)
        prepared, decided = self.prepare(messages, tags=tags)
        delivered = self.deliver(prepared)
        position = {id(message): index for index, message in enumerate(messages)}
        both = decided + delivered
        both.sort(key=lambda outcome: position.get(id(outcome.message), len(messages)))
        return both

    def _session(self, channel_name: str, channel: Channel) -> ChannelSession:
        session = self._sessions.get(channel_name)
        if session is None:
            session = channel.open_session()
            self._sessions[channel_name] = session
        return session

    @staticmethod
    def _outcome(item: PreparedDelivery, error: Exception | None) -> DeliveryOutcome:
        message = item.message
        if error is None:
            message.report(f"{item.channel_type}_delivery_succeeded", True)
            send_ace_message_sent_signal(item.channel, message)
            return DeliveryOutcome(
                message=message,
                channel_type=item.channel_type,
                status=OutcomeStatus.SENT,
                channel_name=item.channel_name,
                tag=item.tag,
            )
        outcome = DeliveryOutcome.from_error(
            message, item.channel_type, error, item.channel_name, tag=item.tag
        )
        if outcome.status is OutcomeStatus.RETRY and would_expire(
            message.expiration_time, outcome.next_attempt_time
        ):
            outcome.status = OutcomeStatus.EXPIRED
            outcome.reason = expiry_reason(outcome.reason, at=outcome.next_attempt_time)
        message.report(f"{item.channel_type}_error", outcome.reason)
        _signal_failure(item.channel, outcome)
        return outcome


def _signal_failure(channel: Channel | None, outcome: DeliveryOutcome) -> None:
    send_ace_message_failed_signal(channel, outcome.message, outcome)
