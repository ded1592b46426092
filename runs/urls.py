"""Dashboard URLs of workflows and runs, under ``t/<slug:tenant>/`` (dashboard namespace)."""

from django.urls import path

from runs import memory_page, overview, views

urlpatterns = [
    path("", overview.OverviewPage.as_view(), name="overview"),
    path("workflows/", views.WorkflowListPage.as_view(), name="workflows"),
    path("workflows/new/", views.WorkflowCreatePage.as_view(), name="workflow-create"),
    path("workflows/<slug:slug>/", views.WorkflowDetailPage.as_view(), name="workflow-detail"),
    path("workflows/<slug:slug>/start/", views.WorkflowStartPage.as_view(), name="workflow-start"),
    path("runs/", views.RunListPage.as_view(), name="runs"),
    path("runs/<int:pk>/", views.RunDetailPage.as_view(), name="run-detail"),
    path("agents/<slug:slug>/memory/", memory_page.AgentMemoryPage.as_view(), name="agent-memory"),
]
