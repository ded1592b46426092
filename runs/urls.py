"""Dashboard URLs of workflows and runs, under ``t/<slug:tenant>/`` (dashboard namespace)."""

from django.urls import path

from controlplane.dashboard.entity_pages import entity_urls
from runs import overview
from runs.memory_page import AgentMemoryPage
from runs.views import runs, workflows

urlpatterns = [
    path("", overview.OverviewPage.as_view(), name="overview"),
    *entity_urls(
        workflows.WorkflowListPage,
        workflows.WorkflowCreatePage,
        workflows.WorkflowDetailPage,
        workflows.WorkflowStartPage,
        runs.RunListPage,
        runs.RunDetailPage,
        AgentMemoryPage,
    ),
]
