from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Cursor pagination ordered by the view's ``ordering`` (stable under inserts)."""

    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "ordering", None) or self.ordering
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)
