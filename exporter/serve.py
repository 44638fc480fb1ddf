"""Where the HTTP service may bind: without API keys, only loopback unless told otherwise.

The rule itself lives with the settings (`core.settings.bind_refusal`), so `config` can report
it too; running the service (`serve`, `up`) lives with the command line (dashboard_metrics/).
"""

from __future__ import annotations

from dashboard_metrics.core.setting_types import ConfigError
from dashboard_metrics.core.settings import Settings, bind_refusal


def check_bind(settings: Settings) -> None:
    """Without API keys the JSON API is open: only loopback, unless explicitly allowed."""
    refusal = bind_refusal(settings)
    if refusal is not None:
        raise ConfigError(refusal)
