# raysynth's image for every shipped cluster config (KubeRay, the AWS and GCP launchers):
# Ray's GPU image at the pinned Ray, raysynth and its stack installed with the constraints
# file that make and CI install with. Build from the repository root:
#   docker build -t <registry>/raysynth:0.1.0 .
# torch comes from PyPI by default (CUDA 13 builds: NVIDIA driver >= 580). For nodes with
# an older driver, name the index of a matching build, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 ...
# A worker whose torch cannot use its GPU fails its search's node check in one line
# (node, torch's CUDA build, the driver), before anything is generated.
FROM rayproject/ray:2.60.0-py311-gpu

ARG TORCH_INDEX=https://pypi.org/simple
# /app holds the sources; /data is where the configs mount shared storage (RAYSYNTH_HOME)
USER 0
RUN mkdir -p /app /data && chown 1000:100 /app /data
USER 1000
WORKDIR /app
COPY --chown=1000:100 pyproject.toml constraints.txt README.md ./
COPY --chown=1000:100 raysynth ./raysynth
COPY --chown=1000:100 jobs ./jobs
COPY --chown=1000:100 search_spaces ./search_spaces
# torch first, from the index that matches the nodes' driver; then raysynth (with S3 and GCS
# artifact clients) under the same constraints
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
        -c constraints.txt torch torchvision \
    && pip install --no-cache-dir -c constraints.txt ".[gpu,s3,gcs]"
# the entry point of every shipped config: python /app/jobs/search.py ...
ENV RAYSYNTH_HOME=/data/raysynth
