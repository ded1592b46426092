from django.urls import include, path

from controlplane.dashboard import views

app_name = "dashboard"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("invitations/", views.answer_invitation, name="invitations"),
    path("t/<slug:tenant>/members/", views.MembersPage.as_view(), name="members"),
    path("t/<slug:tenant>/tokens/", views.TokensPage.as_view(), name="tokens"),
    path("t/<slug:tenant>/audit/", views.AuditPage.as_view(), name="audit"),
    # the registry: agents, tools, providers, MCP servers, secrets, knowledge
    path("t/<slug:tenant>/", include("agents.urls")),
    # the overview (runs.overview), workflows and runs, approvals, then policies
    path("t/<slug:tenant>/", include("runs.urls")),
    path("t/<slug:tenant>/", include("runs.approvals.urls")),
    path("t/<slug:tenant>/", include("policies.urls")),
]
