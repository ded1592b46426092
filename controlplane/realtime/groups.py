"""Channel group names: one per tenant and one per run, never a global group."""


def tenant_group(tenant_id: int) -> str:
    return f"tenant.{tenant_id}"


def run_group(tenant_id: int, run_id: int | str) -> str:
    return f"tenant.{tenant_id}.run.{run_id}"


def runs_group(tenant_id: int) -> str:
    """A tenant's run updates (created, status, progress): what its runs list follows."""
    return f"tenant.{tenant_id}.runs"
