"""Walking a hash chain to prove it has not been edited, truncated or reordered."""

from __future__ import annotations

import dataclasses

from controlplane.audit.hashing import event_hash, fields_of
from controlplane.audit.models import GENESIS_HASH, AuditChain, AuditEvent


@dataclasses.dataclass(frozen=True)
class ChainReport:
    """Outcome of verifying one chain: ``ok`` with ``verified`` events, or the first break."""

    chain: str
    ok: bool
    verified: int
    broken_seq: int | None = None
    reason: str = ""


def verify_chain(chain: AuditChain, *, batch_size: int = 2000) -> ChainReport:
    """Recompute every hash in seq order; stop at the first broken link."""
    expected_seq = 1
    prev_hash = GENESIS_HASH
    events = (
        AuditEvent.objects.unscoped()
        .filter(chain=chain.key)
        .order_by("seq")
        .iterator(chunk_size=batch_size)
    )
    for event in events:
        if event.seq != expected_seq:
            return ChainReport(
                chain.key,
                False,
                expected_seq - 1,
                expected_seq,
                f"event #{expected_seq} is missing (next row is #{event.seq})",
            )
        if event.prev_hash != prev_hash:
            return ChainReport(
                chain.key,
                False,
                expected_seq - 1,
                event.seq,
                f"event #{event.seq} does not link to event #{event.seq - 1}",
            )
        if event_hash(prev_hash, fields_of(event)) != event.hash:
            return ChainReport(
                chain.key,
                False,
                expected_seq - 1,
                event.seq,
                f"event #{event.seq} was altered after it was written",
            )
        prev_hash = event.hash
        expected_seq += 1
    verified = expected_seq - 1
    if verified != chain.last_seq or prev_hash != chain.last_hash:
        return ChainReport(
            chain.key,
            False,
            verified,
            verified + 1,
            f"the chain head says #{chain.last_seq} but rows end at #{verified}: "
            "events were deleted from the end",
        )
    return ChainReport(chain.key, True, verified)


def verify_all(tenant_slug: str | None = None) -> list[ChainReport]:
    chains = AuditChain.objects.select_related("tenant").order_by("key")
    if tenant_slug is not None:
        chains = chains.filter(tenant__slug=tenant_slug)
    reports = [verify_chain(chain) for chain in chains]
    # Rows whose chain head is gone would otherwise never be walked: report them.
    orphans = AuditEvent.objects.unscoped().exclude(chain__in=AuditChain.objects.values("key"))
    if tenant_slug is not None:
        orphans = orphans.filter(tenant__slug=tenant_slug)
    for key in orphans.order_by("chain").values_list("chain", flat=True).distinct():
        reports.append(ChainReport(key, False, 0, 1, "the chain head is missing"))
    return reports
