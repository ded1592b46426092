from rest_framework import serializers

from controlplane.api.choices import TokenScope
from controlplane.api.fields import optional_related
from controlplane.api.models import ApiToken
from controlplane.tenancy.models import Membership


class ApiTokenSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    created_by = optional_related("created_by.username")
    status = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = [
            "prefix",
            "name",
            "username",
            "scope",
            "status",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields


class ApiTokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What the token is for, e.g. 'CI'.")
    scope = serializers.ChoiceField(choices=TokenScope.choices, default=TokenScope.READ)
    expires_in_days = serializers.IntegerField(
        min_value=1,
        max_value=3650,
        required=False,
        help_text="Days until the token expires (default 90).",
    )
    username = serializers.CharField(
        max_length=150,
        required=False,
        help_text="Member the token acts as; defaults to you. Admins may name operators and "
        "viewers, owners also admins; nobody an equal or higher role than their own.",
    )

    def validate_username(self, value):
        # the same answer for a missing account and one outside the tenant: no enumeration
        membership = (
            Membership.objects.for_tenant(self.context["tenant"])
            .filter(user__username=value)
            .select_related("user")
            .first()
        )
        if membership is None:
            raise serializers.ValidationError(f"No member of this tenant is named {value!r}.")
        return membership.user


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The token itself. Shown only in this response: store it now."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields
