"""Filters shared by the API and the dashboard."""

from __future__ import annotations

import datetime as dt

import django_filters
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC before it reaches the database.

    Python accepts offsets up to ±24 h, PostgreSQL only up to ±15:59: a time such as
    ``1247-10-07T16:30:18+20:43`` must become a query, not a database error.
    """

    def to_python(self, value):
        parsed = super().to_python(value)
        if parsed is not None and parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.UTC)
        return parsed


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """``IsoDateTimeFilter`` whose value is normalised to UTC (see ``UtcIsoDateTimeField``)."""

    field_class = UtcIsoDateTimeField
