"""The optional request parameters are one typed set in groups, and the request and defaults schemas derive from it."""

from __future__ import annotations

import json

from heylook_core import Parameter, ParameterGroup, SamplingDefaults
from heylook_core.parameters import SamplingFields
from heylook_core.types import ChatRequest, CompletionRequest, EmbeddingRequest


def test_the_groups_partition_the_parameters() -> None:
    seen: list[Parameter] = [parameter for group in ParameterGroup.ALL for parameter in group]
    assert sorted(seen) == sorted(Parameter), "each parameter belongs to exactly one group"


def test_a_parameter_is_its_name() -> None:
    assert Parameter.TOP_K == "top_k"
    assert f"{Parameter.TOP_K}" == str(Parameter.TOP_K) == "top_k"
    assert "top_k" in ParameterGroup.SAMPLING
    assert json.dumps(sorted(ParameterGroup.LOGPROBS)) == '["logprobs", "top_logprobs"]'


def test_every_generation_parameter_is_a_request_field() -> None:
    fields = set(ChatRequest.model_fields) | set(CompletionRequest.model_fields)
    assert {p.value for p in ParameterGroup.GENERATION} <= fields
    assert {p.value for p in ParameterGroup.EMBEDDINGS} <= set(EmbeddingRequest.model_fields)


def test_the_sampling_fields_are_the_sampling_group_and_max_tokens() -> None:
    names = set(SamplingFields.model_fields) - {"max_tokens"}
    assert names == {p.value for p in ParameterGroup.SAMPLING - {Parameter.LOGIT_BIAS}}


def test_defaults_take_the_requests_fields_with_their_ranges() -> None:
    """``[models.defaults]`` keys are parameters (or max_tokens), each checked as a request checks it."""
    for name, field in SamplingDefaults.model_fields.items():
        assert name == "max_tokens" or name in set(Parameter), name
        request_field = ChatRequest.model_fields[name]
        if name in SamplingFields.model_fields:
            assert field.metadata == request_field.metadata, name
    assert set(SamplingFields.model_fields) <= set(SamplingDefaults.model_fields)
