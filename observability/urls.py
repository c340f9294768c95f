"""Routes of the /api/v1/ API."""

from rest_framework.routers import SimpleRouter

from observability import views

router = SimpleRouter()
router.register("requests", views.ApiRequestViewSet, basename="request")

urlpatterns = router.urls
