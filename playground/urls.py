from django.contrib import admin
from django.urls import include, path

from chat.forms import ThrottledAdminLoginForm

# The admin's log-in is throttled like the main one, on the same counters.
admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
]
