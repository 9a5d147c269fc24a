# syntax=docker/dockerfile:1
# Example of a model's data layer: an image that carries one model's files and copies them into
# the models volume (mounted read-write by a one-off Job or pod; model-worker pods mount it
# read-only at /var/perilflow/models). Shown with the bundled demo model DemoWind; for your own
# model, COPY its folder (model_data/, keys_data/, settings) instead of generating it.
#
#   docker build -f docker/model-data.Dockerfile -t perilflow/model-data-demowind:1.0.0 \
#     --build-arg WORKER_IMAGE=perilflow/model-worker:0.1.0 .
ARG WORKER_IMAGE=perilflow/model-worker:0.1.0

FROM ${WORKER_IMAGE} AS model
RUN python -m perilflow.kernel.demo /tmp/DemoWind > /dev/null

FROM busybox:1.36.1
COPY --from=model --chown=10001:0 /tmp/DemoWind /model-data/DemoWind
USER 10001
# cp into the volume mounted at /var/perilflow/models; runs name files relative to it (DemoWind/...).
ENTRYPOINT ["cp", "-R", "/model-data/.", "/var/perilflow/models/"]
