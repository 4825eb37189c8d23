"""The root URLconf of the Django tests (``django_support``): the admin and the app's URLs."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("mail/", include("mailparity.contrib.django.urls")),
]
