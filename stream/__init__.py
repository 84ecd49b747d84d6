"""ccpulse: contact-center KPIs from a stream of interaction events.

Runs before any submodule is imported: a compiled module that no longer matches its source
is not used (`_compiled`).
"""

from ._compiled import install_guard as _install_guard

_install_guard()
