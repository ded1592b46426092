from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm

from controlplane.api.choices import TokenScope
from controlplane.tenancy.choices import Role


class LoginForm(AuthenticationForm):
    error_messages = {
        "invalid_login": "That username and password do not match an account. Check both and "
        "try again; after repeated failures sign-in is paused for a while.",
        "inactive": "This account is disabled. Ask your administrator.",
    }


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="The username of an existing account.")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)

    def clean_username(self):
        value = self.cleaned_data["username"]
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise forms.ValidationError(
                f"No active user named “{value}”. Check the spelling, or ask the site "
                "administrator to create the account (manage.py create_user)."
            )
        return user


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “CI pipeline”.")
    scope = forms.ChoiceField(
        choices=TokenScope.choices,
        initial=TokenScope.READ,
        help_text="read: GET only; write: also changes; admin: also members and tokens.",
    )
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, initial=90)
    username = forms.ChoiceField(label="Acts as", help_text="The member the token acts as.")

    def __init__(self, *args, members=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].choices = [(m.user.username, m.user.username) for m in members]
