"""App configs of the project package."""

from django.contrib.admin.apps import AdminConfig


class SyndarixAdminConfig(AdminConfig):
    """``django.contrib.admin`` with ``syndarix.admin_site.SyndarixAdminSite`` as ``admin.site``."""

    default_site = "syndarix.admin_site.SyndarixAdminSite"
