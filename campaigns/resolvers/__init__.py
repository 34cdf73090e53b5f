"""Recipient resolver plugins: who a campaign goes to, streamed in keyset-paginated id chunks.

Resolvers are found through the ``campaigns.recipient_resolver`` entry-point namespace
(declared in ``pyproject.toml``), so a developer adds an audience by subclassing
:class:`CampaignRecipientResolver` and declaring an entry point; it then appears in the
admin's resolver choices. See the README section "Extending: recipient resolvers".

Modules: :mod:`~campaigns.resolvers.base` (:class:`ResolvedRecipient` and the base classes),
one module per built-in audience (:mod:`~campaigns.resolvers.users`,
:mod:`~campaigns.resolvers.user_filter`, :mod:`~campaigns.resolvers.recipient_lists`) and
:mod:`~campaigns.resolvers.plugins` (discovery). Everything is importable from
``campaigns.resolvers``, which is also what the entry points in ``pyproject.toml`` name.
"""

from __future__ import annotations

from campaigns.parameters import NO_PARAMETERS, PARAMETERS_NOT_OBJECT, UNKNOWN_PARAMETERS
from campaigns.resolvers.base import (
    DEFAULT_CHUNK_SIZE,
    CampaignRecipientResolver,
    QuerySetResolver,
    ResolvedRecipient,
    UserResolver,
)
from campaigns.resolvers.plugins import (
    NAMESPACE,
    UNKNOWN_RESOLVER,
    available_resolvers,
    resolver_choices,
    resolver_class,
    resolver_for_source,
)
from campaigns.resolvers.recipient_lists import RecipientListForm, RecipientListResolver
from campaigns.resolvers.user_filter import (
    BOOL_LOOKUPS,
    DATE_LOOKUPS,
    FILTER_BAD_LOOKUP,
    FILTER_BAD_VALUE,
    FILTER_NOT_OBJECT,
    MAX_IN_VALUES,
    NUMBER_LOOKUPS,
    TEXT_LOOKUPS,
    USER_FILTER_FIELDS,
    UserFilterForm,
    UserFilterResolver,
    compile_user_filter,
    parse_filter_datetime,
)
from campaigns.resolvers.users import (
    AllActiveUsersResolver,
    GroupMembersForm,
    GroupMembersResolver,
)

__all__ = [
    "BOOL_LOOKUPS",
    "DATE_LOOKUPS",
    "DEFAULT_CHUNK_SIZE",
    "FILTER_BAD_LOOKUP",
    "FILTER_BAD_VALUE",
    "FILTER_NOT_OBJECT",
    "MAX_IN_VALUES",
    "NAMESPACE",
    "NO_PARAMETERS",
    "NUMBER_LOOKUPS",
    "PARAMETERS_NOT_OBJECT",
    "TEXT_LOOKUPS",
    "UNKNOWN_PARAMETERS",
    "UNKNOWN_RESOLVER",
    "USER_FILTER_FIELDS",
    "AllActiveUsersResolver",
    "CampaignRecipientResolver",
    "GroupMembersForm",
    "GroupMembersResolver",
    "QuerySetResolver",
    "RecipientListForm",
    "RecipientListResolver",
    "ResolvedRecipient",
    "UserFilterForm",
    "UserFilterResolver",
    "UserResolver",
    "available_resolvers",
    "compile_user_filter",
    "parse_filter_datetime",
    "resolver_choices",
    "resolver_class",
    "resolver_for_source",
]
