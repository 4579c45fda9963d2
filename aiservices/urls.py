"""AI services routes (`/api/v1/ai/services/...`)."""

urlpatterns: list = []
