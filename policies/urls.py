"""Dashboard URLs of policies, included under ``t/<slug:tenant>/`` (dashboard
namespace). ``new`` and ``decisions`` come before ``<slug>``; the create form refuses them
as policy slugs."""

from django.urls import path

from policies import views

urlpatterns = [
    path("policies/", views.PolicyListPage.as_view(), name="policies"),
    path("policies/new/", views.PolicyCreatePage.as_view(), name="policy-create"),
    path("policies/decisions/", views.DecisionListPage.as_view(), name="policy-decisions"),
    path("policies/<slug:slug>/", views.PolicyDetailPage.as_view(), name="policy-detail"),
    path(
        "policies/<slug:slug>/simulate/",
        views.PolicySimulatePage.as_view(),
        name="policy-simulate",
    ),
]
