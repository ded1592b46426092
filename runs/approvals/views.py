"""Dashboard pages of approvals: the inbox (pending first) and one request, decided here.

Deciding mirrors the API: the page's POST permission is the API's (viewing requests), and
``services.approval_decide`` is called with the page's access. Whether this member may
decide this request is checked first (``can_decide``): a refusal is a 403, audited like
every refused page. A request decided meanwhile is reported, never decided twice.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme

from controlplane.dashboard.pages import TenantListPage, TenantObjectPage
from controlplane.rbac.denials import record_denial
from runs.approvals import services
from runs.approvals.filtersets import ApprovalFilterSet
from runs.approvals.forms import ApprovalDecisionForm, response_form
from runs.approvals.models import ApprovalRequest
from runs.approvals.presenters import approval_cards
from runs.approvals.selectors import inbox, pending_for

DECIDE_PERMISSION = "runs.decide_approvalrequest"  # named in the audit row of a refusal


class ApprovalInboxPage(TenantListPage):
    template_name = "runs/approvals/approval_inbox.html"
    permission_required = "runs.view_approvalrequest"
    nav_section = "approvals"
    model = ApprovalRequest
    filterset_class = ApprovalFilterSet

    def get_queryset(self):
        return inbox(ApprovalRequest.objects.all())

    def get(self, request, *args, **kwargs):
        if request.htmx and "nav-count" in request.GET:  # static/js/nav.js: the count alone
            return TemplateResponse(
                request,
                "runs/approvals/_nav_count.html",
                {"waiting": pending_for(self.access).count()},
            )
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        data["cards"] = approval_cards(
            list(data["objects"]), self.access, next_url=self.request.get_full_path()
        )
        data["has_any"] = data["filtered"] or ApprovalRequest.objects.exists()
        data["mine"] = pending_for(self.access).count()
        return data


class ApprovalDetailPage(TenantObjectPage):
    template_name = "runs/approvals/approval_detail.html"
    permission_required = "runs.view_approvalrequest"
    post_permission_required = "runs.view_approvalrequest"  # as the API; see post()
    nav_section = "approvals"
    model = ApprovalRequest
    lookup_field = "pk"

    def get_queryset(self):
        return ApprovalRequest.objects.select_related(
            "run", "run__workflow", "step_run", "decided_by"
        )

    def get_context_data(self, **kwargs):
        data = super().get_context_data(**kwargs)
        approval = self.object
        forms = {approval.pk: kwargs["forms"]} if kwargs.get("forms") else None
        [card] = approval_cards([approval], self.access, forms=forms)
        data.update(card=card, approval=approval)
        return data

    def next_url(self) -> str:
        wanted = self.request.POST.get("next", "")
        inside = f"/t/{self.tenant.slug}/"
        safe = url_has_allowed_host_and_scheme(
            wanted, allowed_hosts={self.request.get_host()}, require_https=False
        )
        return wanted if wanted.startswith(inside) and safe else self.request.path

    def post(self, request, *args, **kwargs):
        approval = self.object
        if not services.can_decide(access=self.access, approval=approval):
            record_denial(
                request=request, access=self.access, permission=DECIDE_PERMISSION, target=approval
            )
            raise PermissionDenied(
                f"Deciding this request needs the {approval.required_role} role or higher; "
                f"you are {self.access.role}."
            )
        form = ApprovalDecisionForm(request.POST, approval=approval)
        answer = response_form(approval, request.POST)
        if not form.is_valid():
            return self.invalid(forms=(form, answer))
        approve = form.cleaned_data["decision"] == "approve"
        if approve and answer is not None and not answer.is_valid():
            return self.invalid(forms=(form, answer))
        try:
            services.approval_decide(
                approval=approval,
                approve=approve,
                user=request.user,
                access=self.access,
                comment=form.cleaned_data["comment"],
                response=answer.value() if approve and answer is not None else None,
            )
        except ValidationError as exc:
            if "status" in getattr(exc, "message_dict", {}):
                return self.already_decided(approval)
            if answer is None:
                raise
            answer.add_service_errors(exc)
            return self.invalid(forms=(form, answer))
        verb = "Approved" if approve else "Denied"
        then = "continues" if approve else "takes the denial (its step fails)"
        messages.success(request, f"{verb}: “{approval.title}”. Run #{approval.run_id} {then}.")
        return redirect(self.next_url())

    def already_decided(self, approval: ApprovalRequest) -> HttpResponse:
        approval.refresh_from_db()
        who = f" by {approval.decided_by.get_username()}" if approval.decided_by else ""
        messages.error(
            self.request,
            f"Nothing changed: “{approval.title}” was already {approval.status}{who}.",
        )
        return redirect(self.next_url())
