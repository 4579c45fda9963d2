from django.urls import include, path

urlpatterns = [path("", include("agents.context_urls"))]
