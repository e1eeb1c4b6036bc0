"""The registry: a read model over ``<service>.models`` and ``<service>.deployment``.

There is no database: the compacted topics *are* the registry, so every process on the
backplane sees the same state. Reads go to :meth:`Backplane.read_compacted` (latest
descriptor per ``name@version``, latest deployment per service) or replay the deployment
topic (:meth:`Registry.history`). Writes validate, then produce one record:

* descriptors are immutable: publishing an existing ``name@version`` is refused;
* every deployment change (deploy, promote, rollback, policy, apply) is a new record with
  ``revision`` one above the last and a reason, so the topic is the audit trail;
* a deployment names each model *version* once (several versions of one name may be
  live: see :mod:`modelstream.models.deployment` for lanes), names only published
  versions, and is checked against its own trust policy (python allowed, signatures)
  before it is written, so a bad deployment fails at the command rather than in every
  scorer.

Both topics are created with one partition (so the history has one order) and
``compacted``. Concurrent writers are last-writer-wins; two publishers racing for the
next version number may both write it (the later record then replaces the earlier).
Long-running roles use :class:`RegistryFollower` (re-exported here) instead.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelstream.backplane.port import Backplane
from modelstream.backplane.records import OutRecord, now_ms
from modelstream.errors import ConfigurationError, DecodeError, ModelNotFound, ServiceNotFound
from modelstream.models.codec import (
    decode_deployment,
    decode_descriptor,
    encode_deployment,
    encode_descriptor,
)
from modelstream.models.deployment import (
    Deployment,
    Fallback,
    LiveModel,
    Policy,
    Role,
    check_choice,
)
from modelstream.models.descriptor import FORMATS, Lineage, ModelDescriptor
from modelstream.models.follower import RegistryFollower, ensure_topics
from modelstream.models.formats import check_policy, inspect_bytes
from modelstream.models.integrity import read_private_key, sha256_hex, sign_descriptor
from modelstream.models.refs import ModelRef
from modelstream.models.store import inline_limit, place
from modelstream.settings import Settings
from modelstream.wire.topics import ServiceTopics, check_name

if TYPE_CHECKING:
    from modelstream.models.spec import ServiceSpec

log = logging.getLogger(__name__)

__all__ = ["Registry", "RegistryFollower", "ensure_topics"]


class Registry:
    """Models and deployments of every service on ``backplane`` (see the module doc)."""

    def __init__(self, backplane: Backplane, settings: Settings) -> None:
        self._bp = backplane
        self._settings = settings

    # -- reading ---------------------------------------------------------------------------

    def _topic_names(self) -> set[str]:
        return {spec.name for spec in self._bp.list_topics()}

    def services(self) -> list[str]:
        """Services that have a ``models`` or ``deployment`` topic, sorted."""
        found = set()
        for name in self._topic_names():
            service, _, suffix = name.rpartition(".")
            if suffix in ("models", "deployment") and service and "." not in service:
                found.add(service)
        return sorted(found)

    def descriptors(self, service: str) -> list[ModelDescriptor]:
        """Every valid descriptor of ``service``, by name then version (invalid: skipped)."""
        topics = ServiceTopics(service)
        if topics.models not in self._topic_names():
            return []
        found = []
        for key, record in self._bp.read_compacted(topics.models).items():
            try:
                descriptor = decode_descriptor(record.value)
            except DecodeError as exc:
                log.warning("skipping %s record %r: %s", topics.models, key, exc)
                continue
            if descriptor.ref.key == key and descriptor.service == service:
                found.append(descriptor)
        return sorted(found, key=lambda d: d.ref)

    def descriptor(self, service: str, ref: ModelRef) -> ModelDescriptor:
        """The descriptor of ``ref``; ``ModelNotFound`` saying what exists."""
        known = self.descriptors(service)
        for descriptor in known:
            if descriptor.ref == ref:
                return descriptor
        versions = ", ".join(str(d.ref) for d in known if d.name == ref.name) or "none"
        raise ModelNotFound(
            f"model {ref} is not published in service {service} (versions of {ref.name}: "
            f"{versions}); publish it with `modelstream models publish FILE --service "
            f"{service} --name {ref.name}`"
        )

    def history(self, service: str) -> list[Deployment]:
        """Every valid deployment record of ``service``, oldest first (the timeline)."""
        topics = ServiceTopics(service)
        if topics.deployment not in self._topic_names():
            return []
        ends = {p.partition: p.end for p in self._bp.partitions(topics.deployment)}
        records = []
        consumer = self._bp.consumer([topics.deployment], start="earliest")
        try:
            pending = {p for p, end in ends.items() if end > 0}
            while pending:
                batch = consumer.poll(1000, timeout=1.0)
                if not batch:
                    break  # nothing more readable; keep what we have rather than hang
                for record in batch:
                    records.append(record)
                    if record.offset + 1 >= ends.get(record.partition, 0):
                        pending.discard(record.partition)
        finally:
            consumer.close()
        out = []
        for record in sorted(records, key=lambda r: (r.timestamp, r.partition, r.offset)):
            try:
                deployment = decode_deployment(record.value)
            except DecodeError as exc:
                log.warning("skipping %s@%d: %s", record.topic, record.offset, exc)
                continue
            if deployment.service == service:
                out.append(deployment)
        return out

    def deployment(self, service: str) -> Deployment:
        """The deployment in force; ``ServiceNotFound`` if there is none."""
        topics = ServiceTopics(service)
        if topics.deployment in self._topic_names():
            record = self._bp.read_compacted(topics.deployment).get(service.encode())
            if record is not None:
                try:
                    return decode_deployment(record.value)
                except DecodeError as exc:
                    log.warning("latest deployment of %s is invalid: %s", service, exc)
                    valid = self.history(service)
                    if valid:
                        return valid[-1]
        raise ServiceNotFound(service)

    def _current(self, service: str) -> Deployment | None:
        try:
            return self.deployment(service)
        except ServiceNotFound:
            return None

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        service: str,
        name: str,
        data: bytes,
        *,
        format: str,
        version: int | None = None,
        entrypoint: str | None = None,
        sign_key: Path | None = None,
        lineage: Lineage | None = None,
    ) -> ModelDescriptor:
        """Validate ``data`` by loading it once, then publish it as ``name@version``.

        ``version`` defaults to one above the highest published; an existing version is
        refused. A ``river`` model must be signed (``sign_key``): its ``inspect``
        unpickles, which is safe only on bytes the publisher vouches for.
        """
        check_name("service", service)
        check_name("model", name)
        if format not in FORMATS:
            raise ConfigurationError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}")
        if format == "river" and sign_key is None:
            raise ConfigurationError(
                "river models are pickled and load only when signed: publish with --sign-key "
                "KEY (make one with `modelstream keys generate --out DIR`)"
            )
        if format == "python" and not entrypoint:
            raise ConfigurationError("a python model needs --entrypoint module:Class")
        key = read_private_key(sign_key) if sign_key is not None else None
        schema = inspect_bytes(format, data, entrypoint=entrypoint, settings=self._settings)
        existing = {d.version for d in self.descriptors(service) if d.name == name}
        if version is None:
            version = max(existing, default=0) + 1
        elif version < 1:
            raise ConfigurationError(f"version must be 1 or more, got {version}")
        elif version in existing:
            raise ConfigurationError(
                f"model {name}@{version} already exists in service {service} and versions "
                f"are immutable: publish without --version to get {name}@{max(existing) + 1}"
            )
        limit = inline_limit(self._settings, self._bp.max_record_bytes)
        inline, location = place(data, self._settings, limit)
        descriptor = ModelDescriptor(
            service=service,
            name=name,
            version=version,
            format=format,
            sha256=sha256_hex(data),
            schema=schema,
            lineage=lineage or Lineage(created_at=now_ms()),
            data=inline,
            location=location,
            size=len(data),
            entrypoint=entrypoint,
        )
        if key is not None:
            descriptor = sign_descriptor(descriptor, key)
        self.write_descriptor(descriptor)
        return descriptor

    def write_descriptor(self, descriptor: ModelDescriptor) -> None:
        """Produce ``descriptor`` as it is (validated by the codec; no other checks)."""
        topics = ensure_topics(self._bp, descriptor.service)
        value = encode_descriptor(descriptor)
        self._bp.produce(topics.models, [OutRecord(value, key=descriptor.ref.key)])

    # -- deploying -------------------------------------------------------------------------

    def write_deployment(self, deployment: Deployment) -> Deployment:
        """Check ``deployment`` and write it as the next revision; return what was written."""
        service = deployment.service
        previous = self._current(service)
        refs = [str(m.ref) for m in deployment.models]
        if len(set(refs)) != len(refs):
            twice = sorted({r for r in refs if refs.count(r) > 1})
            raise ConfigurationError(
                f"a model version may be live once per deployment, got {', '.join(twice)} "
                "more than once: give each version one role"
            )
        check_choice(deployment)
        for live in deployment.models:
            check_policy(self.descriptor(service, live.ref), deployment)
        final = dataclasses.replace(
            deployment,
            revision=(previous.revision + 1) if previous else 1,
            created_at=now_ms(),
        )
        topics = ensure_topics(self._bp, service)
        value = encode_deployment(final)
        self._bp.produce(
            topics.deployment,
            [OutRecord(value, key=service.encode(), timestamp=final.created_at)],
        )
        return final

    def deploy(  # noqa: PLR0917 - the signature other roles were promised
        self,
        service: str,
        champion: ModelRef,
        challengers: Sequence[ModelRef] = (),
        canary: ModelRef | None = None,
        decoys: Sequence[ModelRef] = (),
        shadows: Sequence[ModelRef] = (),
        policy: Policy | None = None,
        deadline_ms: int | None = None,
        reason: str = "",
        *,
        fallback: Fallback | None = None,
        require_signature: bool | None = None,
        trusted_keys: Mapping[str, str] | None = None,
        allow_python: bool | None = None,
        partitions: int | None = None,
        feature_set: str | None = None,
    ) -> Deployment:
        """Write a deployment of these models; unspecified settings keep their last value.

        ``feature_set`` (a reference, see ``Deployment.feature_set``) of ``""`` removes it.

        A version live before keeps its ``wait_ms`` and ``weight``; a new version of a
        live name takes those of the name's best-role version. Every ref must be
        published (``ModelNotFound``) and allowed by the trust policy.
        """
        previous = self._current(service)
        base = previous or Deployment(service=service, models=())

        def live(ref: ModelRef, role: Role) -> LiveModel:
            old = base.live_ref(ref) or base.live(ref.name)
            return LiveModel(ref, role, old.wait_ms if old else None, old.weight if old else 1.0)

        models = [live(champion, Role.CHAMPION)]
        models += [live(r, Role.CHALLENGER) for r in challengers]
        models += [live(canary, Role.CANARY)] if canary is not None else []
        models += [live(r, Role.DECOY) for r in decoys]
        models += [live(r, Role.SHADOW) for r in shadows]
        options: dict[str, Any] = {
            "policy": policy,
            "deadline_ms": deadline_ms,
            "fallback": fallback,
            "require_signature": require_signature,
            "trusted_keys": None if trusted_keys is None else dict(trusted_keys),
            "allow_python": allow_python,
            "partitions": partitions,
            "feature_set": feature_set,
        }
        changes = {k: v for k, v in options.items() if v is not None}
        if feature_set == "":
            changes["feature_set"] = None
        return self.write_deployment(
            dataclasses.replace(base, models=tuple(models), reason=reason, **changes)
        )

    def promote(self, service: str, ref: ModelRef, reason: str = "") -> Deployment:
        """Make ``ref`` the champion; the old champion becomes a challenger.

        That holds when ``ref`` is another version of the champion's own model too: both
        stay live (the new one takes lane ``name``, the old one lane ``name@version``).
        ``ref`` keeps its ``wait_ms`` and ``weight`` if it was live, else takes those of
        its name's best-role version. Promoting the champion itself changes nothing but
        the reason.
        """
        current = self.deployment(service)
        self.descriptor(service, ref)
        old = current.champion
        entry = current.live_ref(ref) or current.live(ref.name)
        new = LiveModel(
            ref, Role.CHAMPION, entry.wait_ms if entry else None, entry.weight if entry else 1.0
        )
        rest = []
        for m in current.models:
            if m.ref == ref:
                continue
            rest.append(dataclasses.replace(m, role=Role.CHALLENGER) if m is old else m)
        text = reason or f"promote {ref}" + (f" over {old.ref}" if old and old.ref != ref else "")
        return self.write_deployment(dataclasses.replace(current, models=(new, *rest), reason=text))

    def rollback(self, service: str, reason: str = "") -> Deployment:
        """Go back to the live models of the latest earlier deployment with another champion.

        Policy, deadline and fallback come back with them; the trust settings stay as they
        are now (a rollback never weakens them). Rolling back twice returns to where it
        started, like ``cd -``.
        """
        history = self.history(service)
        if not history:
            raise ServiceNotFound(service)
        current = history[-1]
        now = current.champion.ref if current.champion else None
        for earlier in reversed(history[:-1]):
            if earlier.champion is not None and earlier.champion.ref != now:
                text = f"rollback to {earlier.champion.ref} (revision {earlier.revision})"
                return self.write_deployment(
                    dataclasses.replace(
                        current,
                        models=earlier.models,
                        policy=earlier.policy,
                        deadline_ms=earlier.deadline_ms,
                        fallback=earlier.fallback,
                        reason=f"{text}: {reason}" if reason else text,
                    )
                )
        raise ConfigurationError(
            f"service {service} has had no other champion than {now}: nothing to roll back to"
        )

    def set_policy(self, service: str, policy: Policy, reason: str = "") -> Deployment:
        """Change only the rendezvous policy."""
        current = self.deployment(service)
        text = reason or f"policy {policy.kind.value}"
        return self.write_deployment(dataclasses.replace(current, policy=policy, reason=text))

    def apply(self, spec: ServiceSpec) -> Deployment:
        """Publish what a :class:`~modelstream.models.spec.ServiceSpec` names and deploy it."""
        from modelstream.models.spec import apply_spec

        return apply_spec(self, spec)
