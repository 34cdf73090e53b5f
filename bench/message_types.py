"""The benchmark's code-defined message types (templates in ``bench/templates``)."""

from ace.message import MessageType


class BenchMail(MessageType):
    """A ~5 KB text + HTML newsletter: five course items, i18n tags, an unsubscribe link."""

    APP_LABEL = "bench"
    NAME = "benchmail"


class BenchMailWorst(MessageType):
    """The same email with a per-recipient tracking parameter in every item link (the worst
    case for rendering once per batch: the loop depends on the recipient)."""

    APP_LABEL = "bench"
    NAME = "benchmail_worst"
