from django.conf import settings

from controlplane.tenancy.selectors import memberships_of


def dashboard(request):
    """Navigation data for every page: the user's tenants (for the switcher) and the mode."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"mode": settings.MODE}
    return {"my_memberships": memberships_of(user), "mode": settings.MODE}
