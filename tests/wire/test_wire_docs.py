"""The examples of docs/wire-formats.md decode with the wire decoders, so a client
written from that page produces records modelstream reads."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from modelstream.wire.requests import decode_request
from modelstream.wire.results import decode_result
from modelstream.wire.scores import decode_score

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-formats.md"


def section(heading: str) -> str:
    text = DOC.read_text("utf-8")
    start = text.index(f"## `<service>.{heading}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def example(heading: str) -> bytes:
    """The annotated JSON block of a section as JSON: each line loses its notes (what
    follows two spaces after the value) and ``[...]`` stands for an empty list."""
    block = re.search(r"```json\n(.*?)```", section(heading), re.S)
    assert block is not None, heading
    lines = [re.sub(r"^(\s*\S.*?)\s{2,}\S.*$", r"\1", line) for line in block[1].splitlines()]
    return "\n".join(lines).replace("[...]", "[]").encode()


def test_the_request_example_decodes() -> None:
    request = decode_request(example("requests"))
    assert (request.service, request.target, request.entity) == ("fraud", "gbm@3", "truck-7")
    assert request.deadline - request.event_time == 50 and request.sent_at is not None
    assert request.inputs[0].shape == (1, 4)


def test_the_score_example_decodes() -> None:
    score = decode_score(example("scores"))
    assert (score.model, score.version, score.role, score.batch_size) == ("gbm", 3, "champion", 16)
    assert score.outputs is not None and score.outputs[0].data == (1,)


def test_the_result_example_decodes() -> None:
    result = decode_result(example("results"))
    assert (result.ref, result.policy, result.deadline_met) == ("gbm@3", "preference", True)
    assert result.answers == ("gbm@3", "lr@2") and result.late == ("mlp@1",)


def test_the_kcat_example_sends_a_readable_request_with_the_murmur2_partitioner() -> None:
    shell = re.search(r"```sh\n(.*?)```", section("replies"), re.S)
    assert shell is not None
    quoted = re.search(r"echo '([^|]*)\|(.*?)'", shell[1], re.S)
    assert quoted is not None
    key, value = quoted[1], "".join(quoted[2].split("\n"))  # what `tr -d '\n'` leaves
    request = decode_request(value.encode())
    assert request.id == key and request.reply_to == "fraud.replies.my-client"
    assert orjson.loads(value)["inputs"][0]["data"] == [0.1, 2, 3, 4]
    # kcat's default partitioner differs from the one the topics use (murmur2).
    assert "-X topic.partitioner=murmur2_random" in shell[1]
