"""Reset the plugin caches (resolvers, policies, channels) so they don't leak between tests."""

from ace import policy as ace_policy
from ace.channel import channels as ace_channels
from campaigns import policies, resolvers


def reset_plugin_caches() -> None:
    resolvers.available_resolvers.cache_clear()
    policies.reset_plugin_caches()
    ace_policy.policies.reset()
    ace_channels.reset()
    policies.set_batch_toggles(None)
