"""Serves operator-edited templates from the database under the ACE template path.

``DatabaseLoader`` is the first loader in ``TEMPLATES`` (see config/settings/base.py): a
:class:`~campaigns.models.TemplatePart` of message type ``app_label``/``name`` is served at
``<app_label>/edx_ace/<name>/<channel>/<filename>``, so ``ace``'s renderers find it exactly where
they would find a file and need no special case. Paths without a database part fall through to the
file loaders.

Language: the part for the active language (``translation.get_language()``, e.g. ``pt-br``) wins,
then its base language (``pt``), then the part with an empty language (the fallback).

Caching (why it is safe for batches and for several processes):

* Each loader instance (one per template engine, i.e. per process) keeps the parts of a message
  type after the first lookup (one query for all its parts) and the compiled
  :class:`~campaigns.templating.SandboxedTemplate` per (path, chosen language). Paths with no part
  are cached too, so file templates of code-defined message types cost no query either.
* In the process where an operator saves or deletes a part or a message type, a
  ``post_save``/``post_delete`` handler bumps a module-level generation number; the loader clears
  its cache on the next lookup.
* Other processes (Celery workers, other web workers) re-check a cheap version stamp of the two
  tables -- (number of parts, latest ``updated_at`` of parts, latest ``updated_at`` of message
  types) -- at most every ``CAMPAIGNS_TEMPLATE_CACHE_TTL`` seconds (default 5) and clear their cache
  when it changed. The stamp lives in the database rather than in Django's cache because the
  default cache (LocMemCache) is per process, and the database is the one store every process
  shares in every deployment. An edit therefore reaches workers within the TTL; a batch renders
  thousands of messages per TTL with no template query.
* Bulk ``QuerySet.update()`` bypasses both the signal and ``auto_now``; use ``save()`` (the admin
  and the services do).
* A compiled part remembers for a minute that it hit the render time limit (it then fails at
  once, see ``campaigns.sandbox``); an edit compiles a new one, which starts afresh.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db.models import Count, Max
from django.template import Origin, TemplateDoesNotExist
from django.template.loaders.base import Loader
from django.utils import translation

from campaigns import conf
from campaigns.templating import SandboxedTemplate, is_ace_template_path

#: Bumped in-process whenever a part or message type is saved or deleted.
_generation = 0
_generation_lock = threading.Lock()


def bump_generation(**_kwargs: Any) -> None:
    """Signal handler: make every DatabaseLoader of this process drop its cache."""
    global _generation
    with _generation_lock:
        _generation += 1


def connect_signals() -> None:
    """Invalidate the cache when parts or message types change (called from AppConfig.ready)."""
    from django.db.models.signals import post_delete, post_save

    from campaigns.models import MessageTypeDefinition, TemplatePart

    for model in (TemplatePart, MessageTypeDefinition):
        uid = f"campaigns.template_loader.{model.__name__}"
        post_save.connect(bump_generation, sender=model, dispatch_uid=f"{uid}.save")
        post_delete.connect(bump_generation, sender=model, dispatch_uid=f"{uid}.delete")


def language_chain(language: str | None) -> list[str]:
    """Languages to try for ``language``: itself, its base language, then "" (any)."""
    chain: list[str] = []
    code = (language or "").lower().replace("_", "-")
    if code:
        chain.append(code)
        base = code.split("-", 1)[0]
        if base != code:
            chain.append(base)
    chain.append("")
    return chain


def parse_ace_path(template_name: str) -> tuple[str, str, str, str] | None:
    """(app_label, name, channel, filename) of ``<app_label>/edx_ace/<name>/<channel>/<file>``."""
    if not is_ace_template_path(template_name):
        return None
    bits = template_name.split("/")
    if len(bits) != 5:
        return None
    app_label, _edx_ace, name, channel, filename = bits
    return app_label, name, channel, filename


def _db_stamp() -> tuple:
    """A cheap fingerprint of the template tables; changes on every save and delete."""
    from campaigns.models import MessageTypeDefinition, TemplatePart

    parts = TemplatePart.objects.aggregate(n=Count("id"), latest=Max("updated_at"))
    types = MessageTypeDefinition.objects.aggregate(n=Count("id"), latest=Max("updated_at"))
    return (parts["n"], parts["latest"], types["n"], types["latest"])


class DatabaseLoader(Loader):
    """Finds ``TemplatePart`` rows by ACE path and active language; caches compiled templates."""

    def __init__(self, engine):
        super().__init__(engine)
        self._lock = threading.Lock()
        self._generation = -1
        self._stamp: tuple | None = None
        self._checked_at = 0.0
        # (app_label, name) -> {(channel, filename, language): (part id, content)}
        self._parts: dict[tuple[str, str], dict[tuple[str, str, str], tuple[int, str]]] = {}
        # (part id) -> compiled template
        self._templates: dict[int, SandboxedTemplate] = {}

    # -- cache ---------------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self._parts = {}
            self._templates = {}
            self._stamp = None

    def _ensure_fresh(self) -> None:
        ttl = conf.template_cache_ttl()
        if self._generation != _generation:
            # A save/delete in this process: drop everything and take a new stamp now, so a
            # later rollback of that save is noticed by the stamp check too.
            self.reset()
            self._generation = _generation
        now = time.monotonic()
        if self._stamp is None or now - self._checked_at >= ttl:
            stamp = _db_stamp()
            if stamp != self._stamp:
                with self._lock:
                    self._parts = {}
                    self._templates = {}
            self._stamp = stamp
            self._checked_at = now

    def _parts_for(self, app_label: str, name: str) -> dict[tuple[str, str, str], tuple[int, str]]:
        key = (app_label, name)
        parts = self._parts.get(key)
        if parts is None:
            from campaigns.models import TemplatePart

            rows = (
                TemplatePart.objects.filter(
                    message_type__app_label=app_label, message_type__name=name
                )
                .order_by()
                .values_list("id", "channel", "filename", "language", "content")
            )
            parts = {
                (channel, filename, language.lower()): (pk, content)
                for pk, channel, filename, language, content in rows
            }
            self._parts[key] = parts
        return parts

    # -- loader API ----------------------------------------------------------------------------

    def get_template_sources(self, template_name: str):
        """Origins for the parts that could serve ``template_name``, best language first."""
        parsed = parse_ace_path(template_name)
        if parsed is None:
            return
        self._ensure_fresh()
        app_label, name, channel, filename = parsed
        parts = self._parts_for(app_label, name)
        for language in language_chain(translation.get_language()):
            found = parts.get((channel, filename, language))
            if found is not None:
                yield Origin(
                    name=f"database:{app_label}/{name}/{channel}/{filename}[{language or '*'}]",
                    template_name=template_name,
                    loader=self,
                )

    def get_contents(self, origin: Origin) -> str:
        part = self._find(origin)
        if part is None:
            raise TemplateDoesNotExist(origin)
        return part[1]

    def _find(self, origin: Origin) -> tuple[int, str] | None:
        parsed = parse_ace_path(origin.template_name or "")
        if parsed is None:
            return None
        app_label, name, channel, filename = parsed
        language = origin.name.rsplit("[", 1)[-1].rstrip("]").replace("*", "")
        return self._parts_for(app_label, name).get((channel, filename, language))

    def get_template(self, template_name: str, skip=None):
        """Return the cached compiled part for the active language (no query when cached)."""
        tried = []
        for origin in self.get_template_sources(template_name):
            if skip is not None and origin in skip:
                tried.append((origin, "Skipped to avoid recursion"))
                continue
            part = self._find(origin)
            if part is None:  # pragma: no cover - the cache changed between the two calls
                tried.append((origin, "Source does not exist"))
                continue
            pk, content = part
            template = self._templates.get(pk)
            if template is None:
                template = SandboxedTemplate(content, origin, template_name, self.engine)
                self._templates[pk] = template
            return template
        raise TemplateDoesNotExist(template_name, tried=tried)
