"""schemathesis against a running gateway, for a share of its operations.

:func:`fuzz_operations` is what one worker process runs (``test_openapi_fuzz`` starts one
per core, each with its own share of the operations): generating the requests costs far
more CPU than answering them, so the generation is what is spread over the cores, while
the server under test keeps running in the test's own process.

Per operation, ``budget[operation]`` cases drawn from its positive and negative strategies,
with path parameters steered part of the time to real names (so the handlers behind the
404s are reached) and a valid model body now and then for publishing; each sent with a
good token, none, or a wrong one. Deterministic (``derandomize``): a failure is reproduced
by running the test again.
"""

from __future__ import annotations

import base64
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    # schemathesis' own import-time deprecation notices are not this suite's concern.
    warnings.simplefilter("ignore")
    import schemathesis
    from schemathesis import GenerationMode

SERVICES = ("fraud", "scratch", "nobody")
REFS = ("lr@1", "tree@1", "lr@2", "1", "2", "lr@99")


@dataclass
class Findings:
    """What one worker saw: statuses, requests per operation, and the bad responses."""

    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: Findings) -> None:
        self.statuses.update(other.statuses)
        self.per_operation.update(other.per_operation)
        self.failures.extend(other.failures)


def operation_names(document: dict[str, Any]) -> list[str]:
    """Every operation of an OpenAPI document, as ``"METHOD /path"``."""
    schema = schemathesis.openapi.from_dict(document)
    return [_name(result.ok()) for result in schema.get_all_operations()]


def _name(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def steer(case: schemathesis.Case, choices: dict[str, Any]) -> schemathesis.Case:
    """Replace generated path parameters (and the body) by drawn ones (``None``: keep)."""
    body = choices.pop("body", None)
    if body is not None:
        case.body = body
    for name, value in choices.items():
        if value is not None and case.path_parameters and name in case.path_parameters:
            case.path_parameters[name] = value
    return case


def body_is_protocol_error(response: requests.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


def fuzz_operations(url: str, token: str, model: bytes, budget: dict[str, int]) -> Findings:
    """Fuzz the gateway at ``url``: ``budget`` maps each operation to its case count."""
    document = requests.get(f"{url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [r.ok() for r in schema.get_all_operations() if _name(r.ok()) in budget]
    found = Findings()
    good = {"Authorization": f"Bearer {token}"}
    auth = st.sampled_from([good, good, good, {}, {"Authorization": "Bearer wrong"}])
    # A valid model now and then, so publishing gets past the refusal of random bytes.
    valid_publish = st.builds(
        lambda name: {"name": name, "format": "onnx", "data": base64.b64encode(model).decode()},
        st.sampled_from(["lr", "fuzzed"]),
    )
    with requests.Session() as session:
        for operation in operations:
            strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
                GenerationMode.NEGATIVE
            )
            publishes = operation.path.endswith("/models") and operation.method.upper() == "POST"
            choices = st.fixed_dictionaries(
                {
                    "service": st.none() | st.sampled_from(SERVICES),
                    "version": st.none() | st.sampled_from(REFS),
                    "ref": st.none() | st.sampled_from(REFS),
                    "body": (st.none() | valid_publish) if publishes else st.none(),
                }
            )

            @settings(
                max_examples=budget[_name(operation)],
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=st.builds(steer, strategy, choices), headers=auth)
            def fuzz(case: schemathesis.Case, headers: dict[str, str]) -> None:
                response = case.call(base_url=url, session=session, headers=headers, timeout=30)
                found.statuses[response.status_code] += 1
                found.per_operation[_name(case.operation)] += 1
                where = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 500:
                    found.failures.append(f"{where}: {response.text[:300]}")
                elif response.status_code >= 400 and not body_is_protocol_error(response):
                    found.failures.append(f"{where}: not an error body: {response.text[:300]}")

            fuzz()
    return found
