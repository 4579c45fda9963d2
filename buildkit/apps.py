from django.apps import AppConfig


class BuildKitConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "buildkit"
    verbose_name = "Build kit"

    def ready(self) -> None:
        """Add the build kit's platform tools (``find_capabilities``, ``commit_revision``) to the tool registry and
        the build-kit overlay (``__sx__build_kit``) to the static catalog."""
        from agents.runtime.tools.registry import tool_registry

        from .catalog import register_entry
        from .overlay import BUILD_KIT_ENTRY
        from .tools import register_buildkit_tools

        register_buildkit_tools(tool_registry)
        register_entry(BUILD_KIT_ENTRY)
