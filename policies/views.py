"""Dashboard pages of policies.

Policies: the list, create (v1 may stay a draft), one policy (its applied rules, a new
draft version from the JSON editor with problems shown under their path, version history
with a diff between any two versions, activate a draft, roll back to an older version,
switch enforce / log only, delete), the simulation of a version against the tenant's
recorded decisions, and the recent decisions. Pages parse; ``policies.services`` validate
and write; actions needing more than the page's POST permission check it with ``require``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.http import HttpResponse

from agents.choices import Risk
from agents.models import Tool
from controlplane.choices import Status
from controlplane.dashboard.entity_pages import (
    EntityCreatePage,
    EntityListPage,
    EntityObjectPage,
    EntityPages,
)
from controlplane.dashboard.pages import (
    OperationsMixin,
    TenantListPage,
    next_number,
    operation,
    pretty,
    totals_by,
    version_diff_context,
    versions_of,
)
from controlplane.rbac.grants import users_granted
from policies import services
from policies.choices import PolicyMode
from policies.definition import CONDITION_VARIABLES
from policies.filtersets import PolicyDecisionFilterSet, PolicyFilterSet
from policies.forms import (
    SIMULATION_DEFAULT,
    PolicyCreateForm,
    PolicyModeForm,
    PolicyVersionChoiceForm,
    PolicyVersionForm,
    SimulationForm,
    definition_example,
)
from policies.models import Policy, PolicyDecision, PolicyVersion
from policies.presenters import (
    ordered_definition,
    rule_rows,
    transition_rows,
)
from policies.simulation import simulate_version

APPROVE_POLICY = "policies.approve_policy"

POLICY_PAGES = EntityPages(
    model=Policy,
    noun="Policy",
    plural="policies",
    url_name="policy",
    object_kwarg="policy",
    create=services.policy_create,
    select_related=("active_version", "active_version__created_by"),
)


def _say(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _rules_count(version: PolicyVersion | None) -> int | None:
    return len(version.definition.get("rules") or ()) if version is not None else None


# policies ----------------------------------------------------------------------------------


class PolicyListPage(EntityListPage):
    entity = POLICY_PAGES
    template_name = "policies/policy_list.html"
    filterset_class = PolicyFilterSet
    ordering = ("-is_default", "slug")

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        policies = list(data["objects"])
        latest = totals_by(
            PolicyVersion.objects.filter(policy__in=policies), "policy_id", Max("number")
        )
        data["rows"] = [
            {
                "policy": p,
                "rules": _rules_count(p.active_version),
                "latest": latest.get(p.pk),
                "draft": latest.get(p.pk, 0) > (p.active_version.number if p.active_version else 0),
            }
            for p in policies
        ]
        data["can_see_decisions"] = self.can("policies.view_policydecision")
        return data


class PolicyCreatePage(EntityCreatePage):
    entity = POLICY_PAGES
    template_name = "policies/policy_create.html"
    form_class = PolicyCreateForm
    records_creator = True

    def get_form_kwargs(self) -> dict[str, Any]:
        tool = (
            Tool.objects.filter(status=Status.ACTIVE, risk__in=(Risk.WRITE, Risk.DESTRUCTIVE))
            .order_by("slug")
            .first()
        )
        example = definition_example(tool.slug if tool else None)
        return {"initial": {"mode": PolicyMode.ENFORCE, "definition": example}}

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["variables"] = CONDITION_VARIABLES
        return data

    def success_text(self, policy: Policy, form) -> str:
        if form.cleaned_data["activate"]:
            return f"Policy “{policy.slug}” created; v1 applies now."
        return (
            f"Policy “{policy.slug}” created; v1 is a draft. Simulate it against recorded "
            "decisions, then activate it."
        )


class PolicyPage(EntityObjectPage):
    """A page about one policy: found in the tenant first, with its versions."""

    entity = POLICY_PAGES
    context_object_name = "policy"

    def versions(self) -> list[PolicyVersion]:
        return versions_of(self.object, PolicyVersion)

    def version_state(self, version: PolicyVersion) -> str:
        """active, draft (newer than the applied version, or nothing applied) or earlier."""
        active = self.object.active_version
        if active is None or version.number > active.number:
            return "draft"
        return "active" if version.pk == active.pk else "earlier"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["active"] = self.object.active_version
        data["can_simulate"] = self.can("policies.change_policy")
        return data


class PolicyDetailPage(OperationsMixin, PolicyPage):
    template_name = "policies/policy_detail.html"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        policy = self.object
        active = policy.active_version
        versions = self.versions()
        latest = versions[0] if versions else None
        definition = active.definition if active else {}
        extra = {k: v for k, v in ordered_definition(definition).items() if k != "rules" and v}
        data.update(
            rules=rule_rows(definition),
            extra_json=pretty(extra) if extra else "",
            versions=[
                {
                    "version": v,
                    "state": self.version_state(v),
                    "definition": pretty(ordered_definition(v.definition)),
                }
                for v in versions
            ],
            latest=latest,
            next_number=next_number(versions),
            variables=CONDITION_VARIABLES,
            can_save=self.can("policies.add_policyversion"),
            can_delete=self.can("policies.delete_policy") and not policy.is_default,
            default_policy_kept=services.DEFAULT_POLICY_KEPT if policy.is_default else "",
            can_see_decisions=self.can("policies.view_policydecision"),
            approvers=sorted(
                user.get_username()
                for user, perms in users_granted(policy).items()
                if APPROVE_POLICY.split(".", 1)[1] in perms
            ),
            version_form=kwargs.get("version_form")
            or PolicyVersionForm(
                initial={"definition": ordered_definition(latest.definition) if latest else {}}
            ),
        )
        data.update(self.diff(versions, active or latest))
        return data

    def diff(self, versions: list[PolicyVersion], base: PolicyVersion | None) -> dict[str, Any]:
        numbers = [v.number for v in versions]
        initial: dict[str, Any] = {"to": numbers[0] if numbers else None}
        if len(numbers) > 1:
            initial["from"] = base.number if base and base.number != numbers[0] else numbers[1]
        return version_diff_context(self.request, versions, initial, services.policy_version_diff)

    @operation("save", permission="policies.add_policyversion")
    def save_version(self, policy: Policy) -> HttpResponse:
        def save(data: dict[str, Any]) -> HttpResponse:
            version = services.policy_save_version(
                policy=policy, **data, created_by=self.request.user
            )
            return self.done(
                f"Saved v{version.number} as a draft; nothing changed yet. Simulate it, then "
                "activate it.",
                "versions",
            )

        return self.submit(PolicyVersionForm(self.request.POST), save, as_="version_form")

    @operation("activate", "rollback")
    def activate(self, policy: Policy) -> HttpResponse:
        form = PolicyVersionChoiceForm(self.request.POST)
        version = None
        if form.is_valid():
            version = (
                PolicyVersion.objects.filter(policy=policy, number=form.cleaned_data["version"])
                .select_related("policy")
                .first()
            )
        if version is None:
            return self.refuse("Choose a version of this policy to activate.")
        previous = policy.active_version
        try:
            services.policy_activate(policy=policy, version=version)
        except ValidationError as exc:
            return self.refuse(f"Nothing changed: {_say(exc)}")
        if previous is not None and version.number < previous.number:
            text = f"Rolled back to v{version.number} (v{previous.number} no longer applies)."
        else:
            text = f"Activated v{version.number}; it applies from the next decision."
        if policy.mode == PolicyMode.LOG_ONLY:
            text += " The policy is log-only: its rules are recorded, not enforced."
        return self.done(text, "versions")

    @operation("mode")
    def set_mode(self, policy: Policy) -> HttpResponse:
        form = PolicyModeForm(self.request.POST)
        if not form.is_valid():
            return self.refuse("Choose enforce or log only.")
        mode = form.cleaned_data["mode"]
        if mode == policy.mode:
            messages.info(self.request, f"Nothing changed: the policy is already {mode}.")
            return self.back()
        services.policy_set_mode(policy=policy, mode=mode)
        if mode == PolicyMode.LOG_ONLY:
            return self.done("Switched to log only: its rules are recorded as what they would do.")
        return self.done("Switched to enforce: its rules decide calls from the next decision.")

    @operation("delete", permission="policies.delete_policy")
    def delete(self, policy: Policy) -> HttpResponse:
        slug = policy.slug
        try:
            services.policy_delete(policy=policy)
        except ValidationError as exc:
            return self.refuse(_say(exc))
        return self.done(
            f"Policy “{slug}” deleted; its rules no longer apply.", to=self.url("policies")
        )


class PolicySimulatePage(PolicyPage):
    """Replay a version against the tenant's recorded decisions (a read: nothing changes).

    Simulating is part of authoring, so it needs the change permission (it also costs a
    replay of up to a few thousand decisions).
    """

    template_name = "policies/policy_simulate.html"
    actions = ("change", None)
    route = "simulate"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        policy = self.object
        versions = self.versions()
        found = {v.number: v for v in versions}
        asked = "version" in self.request.GET
        initial = {"version": versions[0].number if versions else None, "limit": SIMULATION_DEFAULT}
        form = SimulationForm(
            self.request.GET if asked else None,
            numbers=list(found),
            initial=initial,
        )
        data.update(
            form=form,
            recorded=PolicyDecision.objects.exists(),
            can_change=self.can("policies.change_policy"),
        )
        if asked and form.is_valid():
            version = found[form.cleaned_data["version"]]
            result = simulate_version(
                policy=policy, version=version, limit=form.cleaned_data["limit"]
            )
            data.update(
                version=version,
                state=self.version_state(version),
                result=result,
                transitions=transition_rows(result.transitions),
                changes=[
                    {**c, "arguments_json": pretty(c["arguments"] or {})} for c in result.changes
                ],
            )
        return data


class DecisionListPage(TenantListPage):
    """The tenant's recent decisions, newest first, filtered by effect, action, tool ..."""

    template_name = "policies/decision_list.html"
    permission_required = "policies.view_policydecision"
    nav_section = "policies"
    model = PolicyDecision
    filterset_class = PolicyDecisionFilterSet

    def get_queryset(self):
        return PolicyDecision.objects.select_related(
            "policy", "policy_version", "would_policy"
        ).order_by("-id")
