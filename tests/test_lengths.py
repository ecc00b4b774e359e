"""Answer lengths learned from finished tasks (coordinator/routing/lengths.py) and the
router's estimate of a task's size built from them (coordinator.dispatch.task_spec)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from coordinator.dispatch import (
    DEFAULT_OUTPUT_TOKENS,
    IMAGE_PROMPT_TOKENS,
    answer_estimate,
    task_spec,
)
from coordinator.routing.lengths import AnswerLengths
from hive.cli.dev import DevCluster
from hive.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
    node_agent_pb2,
)


def test_mean_per_type_and_model_after_enough_answers() -> None:
    lengths = AnswerLengths(window=4, min_samples=3)
    lengths.observe("code_review", "qwen2.5-coder:14b", 100)
    lengths.observe("code_review", "qwen2.5-coder:14b", 200)
    assert lengths.estimate("code_review", "qwen2.5-coder:14b") is None
    lengths.observe("code_review", "qwen2.5-coder:14b", 600)
    assert lengths.estimate("code_review", "qwen2.5-coder:14b") == 300
    # Another model of the same type: the type's answers stand in until its own suffice.
    assert lengths.estimate("code_review", "llama3.1:8b") == 300
    # Another type knows nothing yet.
    assert lengths.estimate("testing", "qwen2.5-coder:14b") is None
    # The window keeps the last four.
    for tokens in (40, 40, 40, 40):
        lengths.observe("code_review", "qwen2.5-coder:14b", tokens)
    assert lengths.estimate("code_review", "qwen2.5-coder:14b") == 40


def test_empty_answers_are_not_learned_and_bad_settings_refused() -> None:
    lengths = AnswerLengths(min_samples=1)
    lengths.observe("inference", "m", 0)
    assert lengths.estimate("inference", "m") is None
    with pytest.raises(ValueError):
        AnswerLengths(window=0)


def request(
    model: str = "llama3.1:8b", num_predict: int | None = None
) -> node_agent_pb2.RunTaskRequest:
    r = node_agent_pb2.RunTaskRequest(model=model, type=common_pb2.TASK_TYPE_CODE_REVIEW)
    r.generate.prompt = "x" * 400
    if num_predict is not None:
        r.options.update({"num_predict": num_predict})
    return r


def test_task_spec_uses_learned_length_capped_by_num_predict() -> None:
    lengths = AnswerLengths(min_samples=2)

    def estimate(num_predict: int | None = None) -> tuple[int, str]:
        return answer_estimate(request(num_predict=num_predict), "code_review", lengths)

    # Nothing learned: the task type's default (a cap above it changes nothing).
    assert estimate() == (DEFAULT_OUTPUT_TOKENS["code_review"], "default")
    assert estimate(4096) == (512, "default")
    assert task_spec(request(), 0, None).output_tokens == DEFAULT_OUTPUT_TOKENS["code_review"]
    assert task_spec(request(num_predict=64), 0, None).output_tokens == 64
    lengths.observe("code_review", "llama3.1:8b", 150)
    lengths.observe("code_review", "llama3.1:8b", 250)
    assert estimate() == (200, "learned")
    spec = task_spec(request(), 0, None, estimate()[0])
    assert spec.output_tokens == 200 and spec.prompt_tokens == 100
    # num_predict is a cap, not a forecast: below the estimate it wins, above it not.
    assert estimate(64) == (64, "num_predict")
    assert estimate(4096) == (200, "learned")


def test_answers_are_also_learned_per_cap_and_cut_ones_count_there() -> None:
    """Requests that cap their answers alike get answers alike: the mean given the cap,
    not the overall mean cut at it, once enough of them finished."""
    lengths = AnswerLengths(min_samples=2)

    def estimate(num_predict: int | None = None) -> tuple[int, str]:
        return answer_estimate(request(num_predict=num_predict), "code_review", lengths)

    # Short answers without a cap; long ones to requests capped at 400 (cut there).
    for tokens in (60, 80):
        lengths.observe("code_review", "llama3.1:8b", tokens)
    for _ in range(2):
        lengths.observe("code_review", "llama3.1:8b", 400, cap=400, cut=True)
    # The cut answers are not the model's natural lengths...
    assert estimate() == (70, "learned")
    # ...but for a request capped at 400 they are what comes back.
    assert estimate(400) == (400, "learned_for_cap")
    # A cap not seen often enough: the overall estimate, cut at the cap.
    lengths.observe("code_review", "llama3.1:8b", 30, cap=50)
    assert estimate(50) == (50, "num_predict")
    lengths.observe("code_review", "llama3.1:8b", 34, cap=50)
    assert estimate(50) == (32, "learned_for_cap")
    # Another model's answers to the same cap are its own.
    assert lengths.for_cap("code_review", "qwen2.5-coder:7b", 400) is None


def test_a_cap_is_learned_even_when_more_samples_are_asked_than_a_cap_keeps() -> None:
    lengths = AnswerLengths(window=256, min_samples=AnswerLengths.CAP_WINDOW + 6)
    for _ in range(AnswerLengths.CAP_WINDOW + 6):
        lengths.observe("inference", "m", 90, cap=100)
    assert lengths.for_cap("inference", "m", 100) == 90


def test_the_caps_kept_are_bounded_least_recently_seen_first() -> None:
    lengths = AnswerLengths(min_samples=1)
    for cap in range(1, AnswerLengths.MAX_CAPS + 2):
        lengths.observe("inference", "m", cap, cap=cap)
    assert lengths.for_cap("inference", "m", 1) is None
    assert lengths.for_cap("inference", "m", 2) == 2
    assert lengths.for_cap("inference", "m", AnswerLengths.MAX_CAPS + 1) is not None


def test_running_mean_forgets_what_leaves_the_window() -> None:
    lengths = AnswerLengths(window=3, min_samples=1)
    for tokens in (1000, 10, 20, 30):
        lengths.observe("testing", "m", tokens)
    assert lengths.estimate("testing", "m") == 20


async def test_the_coordinator_learns_answer_lengths_from_finished_tasks(
    dev: DevCluster,
) -> None:
    """Answers the emulator ends on its own are learned; answers cut off at num_predict
    (done_reason "length") are not, except for requests with that same cap."""
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def run(
            prompt: str, num_predict: int | None = None
        ) -> tuple[str, common_pb2.TaskResult]:
            req = inference_pb2.GenerateRequest(model="llama3.1:8b", prompt=prompt)
            if num_predict is not None:
                req.options.update({"num_predict": num_predict})
            task_id, result = "", None
            async for event in stub.Generate(req):
                if event.HasField("assigned"):
                    task_id = event.assigned.task_id
                if event.HasField("result"):
                    result = event.result
            assert result is not None
            return task_id, result

        cut = await asyncio.gather(*(run(f"capped {i}", 3) for i in range(10)))
        dispatcher = dev.coordinator.dispatcher  # type: ignore[union-attr]
        assert all(r.done_reason == "length" for _, r in cut)
        assert dispatcher.lengths.estimate("inference", "llama3.1:8b") is None
        assert dispatcher.lengths.for_cap("inference", "llama3.1:8b", 3) == 3
        free = await asyncio.gather(*(run(f"question {i}") for i in range(10)))
        counts = [r.stats.eval_count for _, r in free]
        assert all(r.done_reason == "stop" for _, r in free)
        mean = round(sum(counts) / 10)
        assert dispatcher.lengths.estimate("inference", "llama3.1:8b") == mean
        # The next task is priced with it, and ExplainTask says so.
        task_id, _ = await run("one more")
        explained = await cluster_pb2_grpc.ClusterServiceStub(channel).ExplainTask(
            cluster_pb2.ExplainTaskRequest(task_id=task_id)
        )
    assert explained.estimated_output_tokens == mean
    assert explained.output_estimate_source == "learned"


def test_prompt_size_counts_tools_images_and_embedding_inputs() -> None:
    chat = node_agent_pb2.RunTaskRequest(
        task_id="t",
        model="llava:7b",
        chat=node_agent_pb2.ChatInput(
            messages=[common_pb2.ChatMessage(role="user", content="x" * 400, images=["AA=="])],
            tools=["y" * 800],
        ),
    )
    assert task_spec(chat, 0, None).prompt_tokens == (400 + 800) // 4 + IMAGE_PROMPT_TOKENS
    embed = node_agent_pb2.RunTaskRequest(
        task_id="e",
        model="nomic-embed-text:latest",
        embed=node_agent_pb2.EmbedInput(input=["z" * 40] * 3),
    )
    spec = task_spec(embed, 0, None, answer_estimate(embed, "inference", None)[0])
    assert (spec.prompt_tokens, spec.output_tokens) == (30, 0)
    assert answer_estimate(embed, "inference", None) == (0, "embedding")
