from rest_framework import serializers

from controlplane.api.fields import optional_related
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import (
    USERNAME_MAX_LENGTH,
    Invitation,
    Membership,
    Tenant,
    username_validator,
)


class TenantSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField(help_text="Your role in this tenant.")
    api_url = serializers.SerializerMethodField()

    class Meta:
        model = Tenant
        fields = ["slug", "name", "role", "created_at", "api_url"]

    def get_role(self, tenant) -> str:
        return self.context["roles"].get(tenant.pk, "")

    def get_api_url(self, tenant) -> str:
        return f"/api/v1/t/{tenant.slug}/"


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    joined_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "email", "role", "joined_at", "updated_at"]
        read_only_fields = ["updated_at"]


class MembershipCreateSerializer(serializers.Serializer):
    username = serializers.CharField(
        max_length=USERNAME_MAX_LENGTH,
        validators=[username_validator],
        help_text="The account name to invite; they join when they accept.",
    )
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = optional_related("invited_by.username")
    status = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = ["username", "role", "status", "invited_by", "created_at", "expires_at"]
        read_only_fields = fields

    def get_status(self, invitation) -> str:
        return "invited"


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
