# Omni Playground: a slim image that runs daphne as a non-root user, data in a volume.
FROM python:3.13-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN python -m venv /venv
COPY pyproject.toml README.md ./
COPY playground playground
COPY chat chat
RUN /venv/bin/pip install ".[postgres,s3]"
COPY . .
# The translations compiled, when there are catalogues (GNU gettext's msgfmt, in the build
# stage only; compilemessages refuses a tree with none).
RUN if ls locale/*/LC_MESSAGES/*.po >/dev/null 2>&1; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends gettext >/dev/null \
      && DJANGO_SECRET_KEY=compilemessages-only PLAYGROUND_DATA_DIR=/tmp/build-data \
         /venv/bin/python manage.py compilemessages --verbosity 0; \
    fi
# Hashed, compressed static files, built once here.
RUN DJANGO_SECRET_KEY=collectstatic-only PLAYGROUND_DATA_DIR=/tmp/build-data \
    /venv/bin/python manage.py collectstatic --noinput --verbosity 0

FROM python:3.13-slim
# No default host names: run with -e DJANGO_ALLOWED_HOSTS=chat.example.com (the entrypoint says
# so and stops when it is missing).
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    PLAYGROUND_DATA_DIR=/data
RUN useradd --system --uid 1000 --home-dir /app playground \
    && mkdir /data && chown playground /data
WORKDIR /app
COPY --from=build /venv /venv
COPY --from=build /app /app
USER playground
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["scripts/docker-entrypoint"]
CMD ["python", "-m", "playground.server", "-b", "0.0.0.0", "-p", "8000", "playground.asgi:application"]
