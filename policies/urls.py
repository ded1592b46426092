"""Dashboard URLs of policies, included under ``t/<slug:tenant>/`` (dashboard
namespace). ``new`` and ``decisions`` come before ``<slug>``; the create form refuses them
as policy slugs."""

from django.urls import path

from controlplane.dashboard.entity_pages import entity_urls
from policies import views

urlpatterns = [
    *entity_urls(views.PolicyListPage, views.PolicyCreatePage),
    path("policies/decisions/", views.DecisionListPage.as_view(), name="policy-decisions"),
    *entity_urls(views.PolicyDetailPage, views.PolicySimulatePage),
]
