# syntax=docker/dockerfile:1
# The Perilflow model-worker base image: the loss kernel and the `perilflow-worker` CLI, nothing
# else -- no Airflow, no database driver. KubernetesPodOperator runs it for every model step:
#   perilflow-worker <step> --params <json>
# with the model's files mounted read-only at /var/perilflow/models and a scratch emptyDir at
# /var/perilflow/work (operators/model_step.py).
#
#   docker build -f docker/model-worker.Dockerfile -t perilflow/model-worker:0.1.0 .   # from the repo root
#   docker run --rm perilflow/model-worker:0.1.0                                         # prints versions

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY perilflow/ perilflow/
COPY kernel/ kernel/
COPY operators/ operators/
COPY plugins/ plugins/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
# Numba compiles for this CPU name; "generic" makes the cache warmed below valid on any x86-64 node.
# Build with e.g. --build-arg NUMBA_CPU_NAME=skylake-avx512 for faster code on a known node type.
ARG NUMBA_CPU_NAME=generic
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NUMBA_CPU_NAME=${NUMBA_CPU_NAME} \
    NUMBA_CACHE_DIR=/var/cache/perilflow/numba \
    PERILFLOW_MODEL_ROOT=/var/perilflow/models \
    PERILFLOW_WORK_DIR=/var/perilflow/work

# Non-root user 10001 in group 0, the group owning the writable folders (so a pod that runs with
# another UID in group 0, as OpenShift does, can still write the numba cache and work folder).
RUN useradd --uid 10001 --gid 0 --home-dir /var/perilflow/work --no-create-home --shell /usr/sbin/nologin perilflow \
 && mkdir -p /var/perilflow/models /var/perilflow/work /var/cache/perilflow/numba \
 && chown -R perilflow:0 /var/perilflow /var/cache/perilflow \
 && chmod -R g=u /var/perilflow /var/cache/perilflow

# Only the kernel's runtime dependencies: setup.cfg install_requires (through the perilflow wheel)
# and s3fs for s3:// storage, at the versions of constraints.txt. The wheel also carries the
# Airflow-side modules as plain files; nothing here installs or imports Airflow.
COPY --from=build /wheels /tmp/wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install -c /tmp/constraints.txt /tmp/wheels/perilflow-*.whl s3fs \
 && rm -rf /tmp/wheels /tmp/constraints.txt

USER 10001
WORKDIR /var/perilflow/work
# Warm numba's on-disk cache: `perilflow warm-up` runs the demo model with every ORD output, so the GUL,
# FM, RI and output kernels compile once, here, instead of in every pod. The cache lives outside the
# mounted volumes.
RUN perilflow warm-up \
 && perilflow-worker versions

ENTRYPOINT ["perilflow-worker"]
CMD ["versions"]
