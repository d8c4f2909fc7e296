# The visits site, run exactly as the StatefulSet runs it: `manage.py serve` as UID 10001.
FROM python:3.13-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.lock /tmp/requirements.lock
RUN /venv/bin/pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock
WORKDIR /app
COPY manage.py gunicorn.conf.py pyproject.toml ./
COPY visits_site ./visits_site
COPY counter ./counter
# Admin CSS is served by whitenoise from hashed, compressed files made here, at build time. The
# key only satisfies the settings check; nothing is signed during the build.
RUN DJANGO_SECRET_KEY=build-time-only /venv/bin/python manage.py collectstatic --noinput -v0 \
    && /venv/bin/python -m compileall -q /app

FROM python:3.13-slim
ARG VERSION=dev
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="app-python" \
      org.opencontainers.image.description="A Django visits counter with per-pod state, for a Kubernetes StatefulSet" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:${PATH} \
    VISITS_DATA_DIR=/app/data
# A fixed UID/GID that the pod's runAsUser and fsGroup name too.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /venv /venv
COPY --from=build /app /app
# The only place the app writes besides /tmp: mount the volume here.
RUN install -d -o 10001 -g 10001 -m 0750 /app/data
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Exec form: gunicorn becomes PID 1 (serve exec()s it), so SIGTERM reaches it directly.
CMD ["python", "manage.py", "serve"]
