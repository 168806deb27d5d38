"""The embedded local stack: a moto server and a PostgreSQL, provisioned like production.

Development tooling: it needs the ``local`` extra, and importing it without that extra fails
with an error that names it.
"""

from __future__ import annotations

from importlib.util import find_spec

from worker.core.errors import ConfigurationError

# moto's server runs on Flask; pgserver is the embedded PostgreSQL.
_EXTRA = ("moto", "flask", "pgserver")

if missing := [name for name in _EXTRA if find_spec(name) is None]:
    raise ConfigurationError(
        f"the local stack needs the 'local' extra ({', '.join(missing)} not installed): "
        "pip install 'vendor-onboarding[local]'"
    )
