"""Dashboard pages: sign-in, tenant picker and the tenant pages of the foundation."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from controlplane.api import services as token_services
from controlplane.api.models import ApiToken
from controlplane.audit.filtersets import AuditEventFilterSet
from controlplane.audit.models import AuditEvent
from controlplane.dashboard.forms import LoginForm, MemberAddForm, MemberRoleForm, TokenCreateForm
from controlplane.dashboard.pages import TenantPage
from controlplane.tenancy import services as tenancy_services
from controlplane.tenancy.choices import Role
from controlplane.tenancy.models import Invitation, Membership
from controlplane.tenancy.selectors import invitations_for, memberships_of

AUDIT_PAGE_SIZE = 50


class LoginView(auth_views.LoginView):
    template_name = "dashboard/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def login_locked_out(request, credentials=None, *args, **kwargs):
    """Shown by django-axes after too many failed sign-ins for a username from one address."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(
        request,
        "dashboard/login.html",
        {
            "form": LoginForm(request),
            "locked_out": True,
            "lockout_minutes": minutes,
        },
        status=429,
    )


@login_required
def home(request):
    """Open the last tenant used, the only one, or a picker (always when invitations wait)."""
    memberships = list(memberships_of(request.user))
    invitations = list(invitations_for(request.user))
    slugs = [m.tenant.slug for m in memberships]
    last = request.session.get("tenant")
    if not invitations and last in slugs:
        return redirect("dashboard:overview", tenant=last)
    if not invitations and len(memberships) == 1:
        return redirect("dashboard:overview", tenant=slugs[0])
    return render(
        request, "dashboard/home.html", {"memberships": memberships, "invitations": invitations}
    )


@login_required
@require_POST
def answer_invitation(request):
    """Accept or decline an invitation addressed to the signed-in account (else 404)."""
    pk = request.POST.get("invitation", "")
    invitation = get_object_or_404(invitations_for(request.user), pk=pk if pk.isdigit() else 0)
    op = request.POST.get("op")
    try:
        if op == "accept":
            tenancy_services.invitation_accept(invitation=invitation, user=request.user)
            messages.success(request, f"You joined {invitation.tenant.name} as {invitation.role}.")
            return redirect("dashboard:overview", tenant=invitation.tenant.slug)
        if op == "decline":
            tenancy_services.invitation_decline(invitation=invitation, user=request.user)
            messages.success(request, f"Invitation to {invitation.tenant.name} declined.")
        else:
            messages.error(request, "Choose accept or decline.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("dashboard:home")


class MembersPage(TenantPage):
    template_name = "dashboard/members.html"
    permission_required = "tenancy.view_membership"
    post_permission_required = "tenancy.change_membership"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["members"] = Membership.objects.select_related("user").order_by("user__username")
        data["roles"] = Role.choices
        data["add_form"] = kwargs.get("add_form") or MemberAddForm()
        data["can_manage"] = self.can("tenancy.change_membership")
        if self.can("tenancy.view_invitation"):
            data["invitations"] = Invitation.objects.select_related("invited_by").order_by(
                "username"
            )
        return data

    def post(self, request, *args, **kwargs):
        op = request.POST.get("op")
        needed = {
            "add": "tenancy.add_membership",
            "remove": "tenancy.delete_membership",
            "cancel": "tenancy.delete_invitation",
        }
        if op in needed and not self.can(needed[op]):
            raise PermissionDenied("Your role does not allow this.")
        try:
            if op == "add":
                form = MemberAddForm(request.POST)
                if not form.is_valid():
                    return self.invalid(add_form=form)
                invitation = tenancy_services.membership_invite(
                    tenant=self.tenant,
                    actor_role=self.access.role,
                    invited_by=request.user,
                    **form.cleaned_data,
                )
                # the same words whether or not the account exists: nothing is revealed
                messages.success(
                    request,
                    f"Invited “{invitation.username}” as {invitation.role}. If an account of "
                    "that name exists, its holder can accept on their home page for "
                    f"{tenancy_services.INVITATION_DAYS} days.",
                )
            elif op == "cancel":
                invitation = get_object_or_404(
                    Invitation, username=request.POST.get("username", "")
                )
                tenancy_services.invitation_cancel(
                    invitation=invitation, actor_role=self.access.role
                )
                messages.success(request, f"Invitation of “{invitation.username}” withdrawn.")
            elif op in ("role", "remove"):
                membership = get_object_or_404(
                    Membership.objects.select_related("user"),
                    user__username=request.POST.get("username", ""),
                )
                if op == "role":
                    form = MemberRoleForm(request.POST)
                    if not form.is_valid():
                        messages.error(request, "Choose a valid role.")
                        return redirect(request.path, status=303)
                    tenancy_services.membership_change_role(
                        membership=membership,
                        role=form.cleaned_data["role"],
                        actor_role=self.access.role,
                    )
                    messages.success(
                        request, f"{membership.user.username} is now {form.cleaned_data['role']}."
                    )
                else:
                    tenancy_services.membership_remove(
                        membership=membership, actor_role=self.access.role
                    )
                    messages.success(request, f"Removed {membership.user.username}.")
            else:
                messages.error(request, "Unknown action.")
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        except PermissionDenied as exc:
            messages.error(request, str(exc))
        return redirect(request.path)


class TokensPage(TenantPage):
    template_name = "dashboard/tokens.html"
    permission_required = "api.view_apitoken"
    post_permission_required = "api.add_apitoken"

    def _form(self, data=None) -> TokenCreateForm:
        # offered: whom the rule lets this person create tokens for; accepted: any member,
        # so a forged choice reaches the service and is refused with an audited 403
        return TokenCreateForm(
            data,
            members=token_services.api_token_targets(tenant=self.tenant, creator=self.request.user),
            all_usernames=Membership.objects.values_list("user__username", flat=True),
            initial={"username": self.request.user.username},
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["tokens"] = ApiToken.objects.select_related("user", "created_by").order_by("-id")
        data["form"] = kwargs.get("form") or self._form()
        data["new_token"] = kwargs.get("new_token")
        data["api_base"] = self.request.build_absolute_uri(f"/api/v1/t/{self.tenant.slug}/")
        return data

    def post(self, request, *args, **kwargs):
        if request.POST.get("op") == "revoke":
            if not self.can("api.delete_apitoken"):
                raise PermissionDenied("Your role does not allow revoking tokens.")
            token = get_object_or_404(ApiToken, prefix=request.POST.get("prefix", ""))
            token_services.api_token_revoke(token=token)
            messages.success(request, f"Token “{token.name}” revoked.")
            return redirect(request.path)
        form = self._form(request.POST)
        if not form.is_valid():
            return self.invalid(form=form)
        user = get_user_model().objects.get(username=form.cleaned_data["username"])
        try:
            issued = token_services.api_token_create(
                tenant=self.tenant,
                user=user,
                name=form.cleaned_data["name"],
                scope=form.cleaned_data["scope"],
                expires_in_days=form.cleaned_data["expires_in_days"],
                created_by=request.user,
            )
        except ValidationError as exc:
            for key, errors in exc.message_dict.items():
                form.add_error(key if key in form.fields else None, errors)
            return self.invalid(form=form)
        # Rendered directly, never stored in the session: the plaintext is shown exactly once.
        response = self.render_to_response(self.get_context_data(new_token=issued), status=201)
        response["Cache-Control"] = "no-store"
        return response


class AuditPage(TenantPage):
    template_name = "dashboard/audit.html"
    permission_required = "audit.view_auditevent"

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        filterset = AuditEventFilterSet(self.request.GET, queryset=AuditEvent.objects.all())
        events = (
            filterset.qs.order_by("-seq") if filterset.is_valid() else AuditEvent.objects.none()
        )
        before = self.request.GET.get("before", "")
        if before.isdigit():
            events = events.filter(seq__lt=int(before))
        page = list(events[: AUDIT_PAGE_SIZE + 1])
        data["filterset"] = filterset
        data["events"] = page[:AUDIT_PAGE_SIZE]
        data["next_before"] = page[AUDIT_PAGE_SIZE - 1].seq if len(page) > AUDIT_PAGE_SIZE else None
        query = self.request.GET.copy()
        query.pop("before", None)
        data["query"] = query.urlencode()
        export = reverse("api:audit-event-export", kwargs={"tenant": self.tenant.slug})
        data["export_jsonl"] = f"{export}?{query.urlencode()}&format=jsonl".replace("?&", "?")
        data["export_csv"] = f"{export}?{query.urlencode()}&format=csv".replace("?&", "?")
        return data
