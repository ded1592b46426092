from django.contrib.auth import get_user_model
from rest_framework import serializers

from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Membership, Tenant


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
    username = serializers.CharField(max_length=150, help_text="An existing user's username.")
    role = serializers.ChoiceField(choices=Role.choices)

    def validate_username(self, value):
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(
                f"No active user named {value!r}: check the spelling, or ask the site "
                "administrator to create the account (manage.py create_user)."
            )
        return user


class MembershipUpdateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=Role.choices)
