"""The Django admin site: staff operate agents here (a thin UI over the services).

The index page is assembled from *sections* that apps contribute from their own ``admin.py``
(``SyndarixAdminSite.register_index_section``): this package imports no app. A section is a template
included on the index and a callable that gives its context for the request (or ``None`` to stay
hidden from that user). The change form of a model whose admin uses ``ObjectSectionsAdminMixin`` shows the
sections apps contribute for its objects the same way (``register_object_section``). ``ReadOnlyAdminMixin`` is the
one definition of a view-only admin (ledgers, version histories, call logs); ``ServiceSaveAdminMixin`` the one way
an admin saves through an app's services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.db import models
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.utils.formats import date_format
from django.utils.timezone import localtime

from .exceptions import DomainError


class ReadOnlyAdminMixin:
    """View-only rows in the admin, for a ``ModelAdmin`` or an inline (put it first in the bases).

    For append-only or service-owned records: staff with the view permission see them; nobody adds,
    changes or deletes them here (their services do, or nothing does). An inline shows its rows
    read-only, without an add row or delete boxes.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ServiceSaveAdminMixin:
    """For a ``ModelAdmin`` whose saves go through an app's race-safe services (put it first in the bases).

    The subclass's ``save_model`` calls the services; when one refuses the save with a ``DomainError`` (such as a
    slug a concurrent request took between the form's checks and the write), the page is shown again with the
    person's input and the service's message as a form error (on its ``field`` when the form has it), instead of a
    server error. ``adopt(obj, saved)`` gives the form's object the identity of the row a create service wrote.
    """

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as exc:  # the write was rolled back; show the form again with the refusal on it
            request._service_save_error = exc
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        error: DomainError | None = getattr(request, "_service_save_error", None)
        if error is None:
            return form

        class RefusedForm(form):
            def clean(self):
                cleaned = super().clean()
                self.add_error(error.field if error.field in self.fields else None, error.message)
                return cleaned

        RefusedForm.__name__ = form.__name__
        return RefusedForm

    @staticmethod
    def adopt(obj: models.Model, saved: models.Model) -> None:
        """Copy the stored field values and database state of ``saved`` (what a create service returned) onto
        ``obj`` (the form's unsaved instance), so the admin's inlines, log entry and redirect use the new row."""
        for field in saved._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding, obj._state.db = False, saved._state.db


def precise_time(value) -> str:
    """A timestamp to the second, in the current time zone (rows of one minute must stay distinguishable); ``-``
    for ``None``."""
    return date_format(localtime(value), "Y-m-d H:i:s T") if value else "-"


class LatestRowsFormSet(BaseInlineFormSet):
    """An inline showing only its first ``limit`` rows in its ordering (set ``limit`` on a subclass): for child
    rows that grow without bound, such as a ledger or a run history."""

    limit = 50

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = list(super().get_queryset()[: self.limit])
        return self._latest


#: What a section contributes to the index for one request: context keys, or ``None`` to stay hidden.
SectionContext = Callable[[HttpRequest], dict[str, Any] | None]


@dataclass(frozen=True)
class IndexSection:
    """One block of the admin index, contributed by an app.

    Attributes:
        name: unique key of the section (registering the same name again replaces it).
        template: the template included on the index; it sees the index context plus the section's keys.
        context: ``context(request)`` returns the section's context keys, or ``None`` when the user may not
            see it (the template is then not included).
        order: sections are shown by ascending ``order``, then by name.
        css: stylesheet paths (static files) the section needs.
        js: script paths (static files) the section needs, loaded in this order after the admin's own.
    """

    name: str
    template: str
    context: SectionContext
    order: int = 100
    css: tuple[str, ...] = ()
    js: tuple[str, ...] = ()


@dataclass(frozen=True)
class ObjectSection:
    """One block below an object's change form, contributed by an app (``register_object_section``); like
    ``IndexSection``, ``context(request, obj)`` gives its keys or ``None`` to stay hidden."""

    name: str
    template: str
    context: Callable[[HttpRequest, models.Model], dict[str, Any] | None]
    order: int = 100
    css: tuple[str, ...] = ()


class ObjectSectionsAdminMixin:
    """For a ``ModelAdmin`` whose change form shows the sections apps register for its model
    (``SyndarixAdminSite.register_object_section``); its ``change_form_template`` includes ``object_sections``
    (see ``admin/projects/project/change_form.html``)."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and change:
            context.update(self.admin_site.object_sections_context(request, obj))
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


class SyndarixAdminSite(admin.AdminSite):
    site_header = "Syndarix administration"
    site_title = "Syndarix admin"
    index_title = "Agent operations"
    index_template = "admin/syndarix_index.html"
    site_url = None  # no public site to "view": the admin and the API are the product

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)
        self._index_sections: dict[str, IndexSection] = {}
        self._object_sections: dict[type[models.Model], dict[str, ObjectSection]] = {}

    def register_index_section(
        self, name: str, *, template: str, context: SectionContext, order: int = 100, css: tuple[str, ...] = (),
        js: tuple[str, ...] = (),
    ) -> IndexSection:
        """Add a section to the index (an app calls this from its ``admin.py``); returns it.

        ``context(request)`` runs on every index request; keep it to a fixed number of queries.
        """
        section = IndexSection(name=name, template=template, context=context, order=order, css=tuple(css),
                               js=tuple(js))
        self._index_sections[name] = section
        return section

    def index_sections(self) -> list[IndexSection]:
        """The registered sections in display order."""
        return sorted(self._index_sections.values(), key=lambda s: (s.order, s.name))

    def register_object_section(
        self, model: type[models.Model], name: str, *, template: str, context, order: int = 100,
        css: tuple[str, ...] = (),
    ) -> ObjectSection:
        """Add a section below the change form of ``model``'s objects (an app calls this from its ``admin.py``;
        the model's admin uses ``ObjectSectionsAdminMixin``); returns it. ``context(request, obj)`` runs on every
        change form of such an object; keep it to a fixed number of queries."""
        section = ObjectSection(name=name, template=template, context=context, order=order, css=tuple(css))
        self._object_sections.setdefault(model, {})[name] = section
        return section

    def object_sections_context(self, request, obj: models.Model) -> dict[str, Any]:
        """The keys of ``obj``'s visible sections, plus ``object_sections`` (the ``ObjectSection`` objects to
        include, in order) and ``object_sections_css``."""
        context: dict[str, Any] = {}
        shown: list[ObjectSection] = []
        sections = self._object_sections.get(type(obj), {}).values()
        for section in sorted(sections, key=lambda s: (s.order, s.name)):
            values = section.context(request, obj)
            if values is not None:
                context.update(values)
                shown.append(section)
        css = list(dict.fromkeys(path for section in shown for path in section.css))
        return {**context, "object_sections": shown, "object_sections_css": css}

    def index(self, request, extra_context=None):
        """The admin index with each section visible to the user: its keys are merged into the context and
        ``index_sections`` lists the ``IndexSection`` objects to include (and ``index_css`` and ``index_js`` their
        stylesheets and scripts)."""
        context: dict[str, Any] = {}
        shown: list[IndexSection] = []
        for section in self.index_sections():
            values = section.context(request)
            if values is None:
                continue
            context.update(values)
            shown.append(section)
        css = list(dict.fromkeys(path for section in shown for path in section.css))
        js = list(dict.fromkeys(path for section in shown for path in section.js))
        context.update(index_sections=shown, index_css=css, index_js=js)
        return super().index(request, extra_context={**context, **(extra_context or {})})
