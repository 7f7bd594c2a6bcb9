# The Airflow image of docker-compose.yaml: Airflow 3.3.2 with the sync's pinned requirements,
# the DAG, the plugin and the package baked in (compose also mounts them read-only, so an edit
# on the host shows without a rebuild). Build: `docker compose build`.
FROM apache/airflow:3.3.2

# fsspec backends for staging on object storage instead of the shared volume, e.g.
#   docker compose build --build-arg STAGING_PACKAGES="s3fs==2026.9.0"     (s3://)
#   docker compose build --build-arg STAGING_PACKAGES="gcsfs==2026.10.0"   (gs://)
ARG STAGING_PACKAGES=""

COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# Airflow is named in the same install, so pip can never up- or downgrade it to satisfy
# a requirement (the pattern of Airflow's "Building the image" guide).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r /opt/airflow/requirements.txt ${STAGING_PACKAGES}

COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
# Installed for its entry points: the Moesif and Segment connection types (a provider) and
# the run-history plugin. The package lives in include/ (src layout) and PYTHONPATH puts the
# mounted copy first, so an edit on the host still shows without a rebuild.
RUN pip install --no-cache-dir --no-deps /opt/airflow
ENV PYTHONPATH=/opt/airflow/include

# Named volumes start as a copy of these folders, so they belong to the airflow user (and,
# like the rest of the image, to group 0) without a root step: the staging volume that every
# worker and the api-server share, the task logs, and the config with the UI's password.
RUN mkdir -p /opt/airflow/staging /opt/airflow/logs /opt/airflow/config \
    && chmod -R g+rwX /opt/airflow/staging /opt/airflow/logs /opt/airflow/config
