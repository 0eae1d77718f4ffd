"""The suite as one class: subclass :class:`ConformanceSuite` in a test module, or let ``--heylook-conformance`` run
it (:mod:`heylook_core.conformance.cli`).

A subclass sets ``heylook_models`` (the ids to check; the command line's ``--heylook-model`` otherwise) and may
override the ``heylook_target`` fixture (class or session scope) to serve a configuration it builds. One server
runs per class; each model is checked in turn, loaded through the admin route before its first check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from heylook_core.conformance import Target
from heylook_core.conformance.audio import AudioChecks
from heylook_core.conformance.errors import ErrorChecks
from heylook_core.conformance.parameters import ParameterChecks
from heylook_core.conformance.session import Served, Subject
from heylook_core.conformance.text import TextChecks
from heylook_core.conformance.vectors import VectorChecks


@pytest.mark.heylook_conformance
class ConformanceSuite(TextChecks, ParameterChecks, VectorChecks, ErrorChecks, AudioChecks):
    """Every conformance check, run once per model of ``heylook_models``."""

    heylook_suite = True
    heylook_models: Sequence[str] = ()

    @pytest.fixture(scope="class")
    @classmethod
    def heylook_server(cls, heylook_target: Target) -> Iterator[Served]:
        with Served.start(heylook_target) as served:
            yield served

    @pytest.fixture(scope="class")
    @classmethod
    def heylook(cls, heylook_server: Served, heylook_model_id: str, heylook_target: Target) -> Subject:
        return heylook_server.subject(heylook_model_id, heylook_target)


__all__ = ["ConformanceSuite"]
