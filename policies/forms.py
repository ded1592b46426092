"""Dashboard forms of policies (create, new draft version, activate, mode, simulation)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from controlplane.dashboard.forms import DashboardForm, JSONTextField, NamedForm, note_field
from policies.choices import PolicyMode

# policies ----------------------------------------------------------------------------------

RESERVED_SLUGS = ("new", "decisions")  # path segments of the policies pages
DEFINITION_HELP = (
    "JSON: rules (and optionally rate_limits and budgets). Problems are listed by path, "
    "e.g. rules[0].condition; nothing is saved until the whole definition is valid."
)
SIMULATION_DEFAULT = 200
SIMULATION_MAX = 5000


class PolicyDefinitionErrors:
    """Service errors keyed ``definition.rules[0].condition`` go next to the definition field,
    named by their path inside the definition (``rules[0].condition: ...``)."""

    def add_service_errors(self, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for key, messages in exc.message_dict.items():
                if key == "definition" or key.startswith("definition."):
                    path = key.removeprefix("definition").lstrip(".")
                    self.add_error("definition", [f"{path}: {m}" if path else m for m in messages])
                    continue
                DashboardForm.add_service_errors(self, ValidationError({key: messages}))
            self._mark_invalid()
            return
        DashboardForm.add_service_errors(self, exc)


class PolicyCreateForm(PolicyDefinitionErrors, NamedForm):
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 2}), max_length=5000
    )
    mode = forms.ChoiceField(
        choices=PolicyMode.choices,
        initial=PolicyMode.ENFORCE,
        widget=forms.RadioSelect,
        help_text="Log only: the rules are evaluated and recorded as what they would have "
        "done, but never change a call's outcome.",
    )
    definition = JSONTextField(expect=dict, rows=18, help_text=DEFINITION_HELP)
    note = note_field()
    activate = forms.BooleanField(
        required=False,
        initial=False,
        label="Activate now",
        help_text="Leave it off to keep v1 a draft: simulate it against recorded decisions "
        "first, then activate it from the policy's page.",
    )

    def clean_slug(self):
        slug = self.cleaned_data["slug"]
        if slug in RESERVED_SLUGS:
            raise forms.ValidationError(f"“{slug}” names a page of its own here; choose another.")
        return slug


class PolicyVersionForm(PolicyDefinitionErrors, DashboardForm):
    definition = JSONTextField(
        expect=dict,
        rows=18,
        label="Definition",
        help_text="The new version's definition. " + DEFINITION_HELP.split(". ", 1)[1],
    )
    note = note_field("What changed, e.g. “refunds over 100 wait”.")


class PolicyVersionChoiceForm(DashboardForm):
    """The version an action (activate, roll back) applies to."""

    version = forms.IntegerField(min_value=1)


class PolicyModeForm(DashboardForm):
    mode = forms.ChoiceField(choices=PolicyMode.choices)


class SimulationForm(forms.Form):
    """``?version=3&limit=200``: the version to replay and how many recorded decisions."""

    def __init__(self, *args: Any, numbers: list[int], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["version"] = forms.TypedChoiceField(
            coerce=int, choices=[(n, f"v{n}") for n in numbers], label="Version"
        )
        self.fields["limit"] = forms.IntegerField(
            min_value=1,
            max_value=SIMULATION_MAX,
            initial=SIMULATION_DEFAULT,
            label="Recorded decisions",
            help_text=f"The newest N decisions of this tenant (at most {SIMULATION_MAX}).",
        )


def definition_example(tool_slug: str | None = None) -> dict[str, Any]:
    """A valid starting point: one rule asking approval for large calls of a tool (of any
    tool that writes when the tenant has none yet: a policy names only tools that exist)."""
    matcher = tool_slug or "risk:write"
    what = tool_slug or "tools that write"
    return {
        "rules": [
            {
                "id": "large-calls-need-approval",
                "description": f"An admin approves calls of {what} with an amount above 100.",
                "effect": "require_approval",
                "actions": ["call_tool"],
                "tools": [matcher],
                "condition": "args.amount > 100",
                "priority": 10,
                "approvers": {"role": "admin", "quorum": 1},
            }
        ]
    }
