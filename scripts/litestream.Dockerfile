# Litestream as its own small image, for the chart's backup sidecar: the binary that
# scripts/litestream.sh built (`scripts/litestream.sh image` copies it into the context).
# It links glibc dynamically, so the base is a Debian one, not scratch: by default the app's own
# base, whose layers the node already has.
FROM python:3.13-slim
ARG VERSION=unknown
LABEL org.opencontainers.image.title="app-python-litestream" \
      org.opencontainers.image.description="Litestream for the app-python chart's backup sidecar" \
      org.opencontainers.image.version="${VERSION}"
COPY litestream /usr/local/bin/litestream
# The app's UID: the sidecar reads and checkpoints the app's database on the same volume.
USER 10001:10001
# A sidecar whose health is the pod's: the kubelet restarts it when it exits.
HEALTHCHECK NONE
ENTRYPOINT ["litestream"]
CMD ["version"]
