import json
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from controlplane import jsoninput
from controlplane.api.choices import TokenScope
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import USERNAME_MAX_LENGTH, slug_validator, username_validator


class LoginForm(AuthenticationForm):
    error_messages = {
        "invalid_login": "That username and password do not match an account. Check both and "
        "try again; after repeated failures sign-in is paused for a while.",
        "inactive": "This account is disabled. Ask your administrator.",
    }


class MemberAddForm(forms.Form):
    username = forms.CharField(
        max_length=USERNAME_MAX_LENGTH,
        validators=[username_validator],
        help_text="The account name to invite. They join when they accept the invitation.",
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class MemberChoiceField(forms.ChoiceField):
    """Offers ``choices`` but accepts any username in ``accepted``.

    The tokens form offers only the members one may create tokens for; another member's
    name still reaches the service, which refuses it with an audited 403 (a forged form
    is a denial to record, not a typo).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accepted: set[str] = set()

    def valid_value(self, value):
        return value in self.accepted or super().valid_value(value)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “CI pipeline”.")
    scope = forms.ChoiceField(
        choices=TokenScope.choices,
        initial=TokenScope.READ,
        help_text="read: GET only; write: also changes; admin: also members and tokens. "
        "Admin only for admins and owners.",
    )
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, initial=90)
    username = MemberChoiceField(
        label="Acts as",
        help_text="You, or a member whose role is below yours.",
    )

    def __init__(self, *args, members=(), all_usernames=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].choices = [(m.user.username, m.user.username) for m in members]
        self.fields["username"].accepted = set(all_usernames)


SLUG_HELP = "1-50 lowercase letters, digits and hyphens; how runs and the API name it."


# fields ------------------------------------------------------------------------------------


class CodeTextarea(forms.Textarea):
    def __init__(self, rows: int = 8, attrs: dict[str, Any] | None = None):
        super().__init__(
            attrs={"rows": rows, "class": "code", "spellcheck": "false", **(attrs or {})}
        )


class WriteOnlyTextarea(CodeTextarea):
    """A textarea for secrets: renders empty, so a page never carries a secret value back."""

    def get_context(self, name, value, attrs):
        context = super().get_context(name, None, attrs)
        context["widget"]["value"] = None
        return context


class JSONTextField(forms.CharField):
    """JSON typed as text; ``expect`` is the type the value must have (dict or list).

    Read behind the API's limits (``controlplane.jsoninput``): no NUL character, nesting at
    most ``JSON_MAX_DEPTH`` levels.

    A blank field means ``blank_value`` (e.g. ``{}``; ``None`` for "keep what is stored").
    """

    def __init__(self, *, expect: type = dict, blank_value: Any = None, rows: int = 8, **kwargs):
        self.expect = expect
        self.blank_value = blank_value
        kwargs.setdefault("widget", CodeTextarea(rows=rows))
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)

    def to_python(self, value):
        text = super().to_python(value)
        if text in self.empty_values:
            return json.loads(json.dumps(self.blank_value))  # a fresh copy
        try:
            data = jsoninput.load(text)
        except jsoninput.JSONInputError as exc:
            at = f" (at {exc.path})" if exc.path else ""
            raise ValidationError(f"{exc.message}{at}", code=exc.code) from None
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"This is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.",
                code="invalid_json",
            ) from None
        if not isinstance(data, self.expect):
            shape = "an object ({...})" if self.expect is dict else "a list ([...])"
            raise ValidationError(f"Give {shape} here.", code="invalid_shape")
        return data

    def prepare_value(self, value):
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value


class ListTextField(forms.CharField):
    """A list of strings typed with a separator (``","`` for tags, a new line for arguments)."""

    def __init__(self, *, separator: str = ",", item_max_length: int = 50, **kwargs):
        self.separator = separator
        self.item_max_length = item_max_length
        if separator == "\n":
            kwargs.setdefault("widget", CodeTextarea(rows=3))
        super().__init__(**kwargs)

    def to_python(self, value):
        text = super().to_python(value) or ""
        lines = text.splitlines() if self.separator == "\n" else text.split(self.separator)
        items = [item.strip() for item in lines]
        items = [item for item in items if item]
        too_long = [item for item in items if len(item) > self.item_max_length]
        if too_long:
            raise ValidationError(
                f"Keep each entry to {self.item_max_length} characters: {too_long[0][:60]!r} "
                "is longer."
            )
        return list(dict.fromkeys(items))

    def prepare_value(self, value):
        if isinstance(value, list):
            return (", " if self.separator == "," else self.separator).join(value)
        return value


def tags_field() -> ListTextField:
    return ListTextField(
        required=False, help_text="Comma-separated, e.g. support, billing.", max_length=2000
    )


def slug_field(**kwargs) -> forms.CharField:
    kwargs.setdefault("help_text", SLUG_HELP)
    return forms.CharField(max_length=50, validators=[slug_validator], **kwargs)


FIRST_VERSION_NOTE = "What the first version is, e.g. “first draft”."


def note_field(help_text: str = FIRST_VERSION_NOTE) -> forms.CharField:
    """A version's note (what it is, what changed)."""
    return forms.CharField(max_length=300, required=False, help_text=help_text)


def write_only_text(*, max_length: int, **kwargs: Any) -> forms.CharField:
    """A secret typed once (an API key, a secret's value): never rendered back, kept as typed."""
    return forms.CharField(
        max_length=max_length,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        **kwargs,
    )


def is_write_only(field: forms.Field) -> bool:
    """A field whose widget never renders a value: a page never starts it from a stored one."""
    return isinstance(field.widget, forms.PasswordInput | WriteOnlyTextarea)


def write_only_json(help_text: str) -> JSONTextField:
    return JSONTextField(
        required=False,
        blank_value=None,
        rows=3,
        widget=WriteOnlyTextarea(rows=3),
        help_text=help_text,
    )


# the base ----------------------------------------------------------------------------------


class DashboardForm(forms.Form):
    """Errors linked to their fields for screen readers, and service errors put in place."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            # not self[name]: a bound field made now would freeze today's help text
            auto_id = self.auto_id % self.add_prefix(name)
            field.widget.attrs["aria-describedby"] = f"{auto_id}_help {auto_id}_errors"

    def full_clean(self):
        super().full_clean()
        self._mark_invalid()

    @classmethod
    def initial_for(cls, obj: Any) -> dict[str, Any]:
        """``obj``'s values of this form's fields, to edit it (write-only fields left blank)."""
        return {
            name: getattr(obj, name)
            for name, field in cls.base_fields.items()
            if not is_write_only(field) and hasattr(obj, name)
        }

    def service_fields(self) -> dict[str, Any]:
        """The cleaned data as the create or update service takes it."""
        return dict(self.cleaned_data)

    @property
    def has_field_errors(self) -> bool:
        return any(name in self.fields for name in self.errors)

    def _mark_invalid(self):
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs["aria-invalid"] = "true"

    def add_service_errors(self, exc: ValidationError) -> None:
        """Put a service's ``ValidationError`` next to the fields it names.

        A key such as ``config.temperature`` lands on the ``config`` field with its path kept
        in the message; keys naming no field of this form become errors of the whole form.
        """
        if not hasattr(exc, "error_dict"):
            for message in exc.messages:
                self.add_error(None, message)
            return
        for key, messages in exc.message_dict.items():
            field = key.split(".", 1)[0].split("[", 1)[0]
            if field in self.fields:
                self.add_error(field, [m if key == field else f"{key}: {m}" for m in messages])
            elif key == NON_FIELD_ERRORS:
                self.add_error(None, messages)
            else:
                self.add_error(None, [f"{key.replace('_', ' ')}: {m}" for m in messages])
        self._mark_invalid()


class NamedForm(DashboardForm):
    """The first fields of a registry entry: its slug, name and description."""

    slug = slug_field()
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class CreateOrEditForm(NamedForm):
    """A registry entry's form on both its create and its edit page; ``creating`` (passed by
    the entity pages) says which, for the fields and help texts that differ."""

    def __init__(self, *args, creating: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.creating = creating


class VersionDiffForm(forms.Form):
    """``?from=1&to=3``: the two versions to compare (the API's parameters)."""

    def __init__(self, *args, numbers: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [(n, f"v{n}") for n in numbers]
        for key, label in (("from", "From version"), ("to", "To version")):
            self.fields[key] = forms.TypedChoiceField(coerce=int, choices=choices, label=label)
