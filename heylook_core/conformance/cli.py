"""The module ``--heylook-conformance`` collects: the suite on ``--heylook-config`` and ``--heylook-model``."""

from __future__ import annotations

from heylook_core.conformance.suite import ConformanceSuite


class TestConformance(ConformanceSuite):
    """heylook's conformance suite, on the models the command line names."""
