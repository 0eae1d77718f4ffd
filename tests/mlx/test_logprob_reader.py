"""Log-probabilities read on the host equal MLX's own, in every dtype a model's logits come in."""

from __future__ import annotations

import mlx.core as mx
import pytest

from heylook_mlx.sampling import LogprobReader, host_vector


class Pieces:
    """A tokenizer's ``decode`` for ids alone (the reader asks it for each token's text)."""

    def decode(self, ids: list[int]) -> str:
        return f"<{ids[0]}>"


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16])
def test_the_host_read_matches_mlx(dtype: mx.Dtype) -> None:
    mx.random.seed(3)
    logits = mx.random.normal((1, 500)) * 4
    logprobs = (logits - mx.logsumexp(logits, keepdims=True)).astype(dtype).squeeze(0)
    mx.eval(logprobs)
    expected = logprobs.astype(mx.float32).tolist()
    assert host_vector(logprobs).tolist() == pytest.approx(expected, abs=0, rel=0)

    entry = LogprobReader(Pieces(), 4).read(17, logprobs)
    assert entry.token == "<17>" and entry.bytes == list(b"<17>")
    assert entry.logprob == expected[17]
    best = sorted(range(500), key=lambda index: -expected[index])[:4]
    assert [top.token for top in entry.top_logprobs] == [f"<{index}>" for index in best]
    assert [top.logprob for top in entry.top_logprobs] == [expected[index] for index in best]


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_a_strided_batch_row_is_read_right(dtype: mx.Dtype) -> None:
    rows = mx.arange(12, dtype=mx.float32).reshape(3, 4).astype(dtype)
    column = rows[:, 1]  # not contiguous
    mx.eval(column)
    assert host_vector(column).tolist() == [1.0, 5.0, 9.0]
    assert LogprobReader(Pieces(), 0).read(2, column).logprob == 9.0
