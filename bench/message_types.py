"""The benchmark's code-defined message type (templates in ``bench/templates``)."""

from ace.message import MessageType


class BenchMail(MessageType):
    """A ~5 KB text + HTML newsletter: five course items, i18n tags, an unsubscribe link."""

    APP_LABEL = "bench"
    NAME = "benchmail"
