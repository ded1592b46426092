"""Dashboard URLs of approvals, included under ``t/<slug:tenant>/`` (dashboard namespace)."""

from django.urls import path

from runs.approvals import views

urlpatterns = [
    path("approvals/", views.ApprovalInboxPage.as_view(), name="approvals"),
    path("approvals/<int:pk>/", views.ApprovalDetailPage.as_view(), name="approval-detail"),
]
