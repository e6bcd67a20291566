# planguard in a container, for pipelines that should not set up Python:
#   docker build -t planguard .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" planguard compare OLD NEW -w workloads/app.json
# psycopg's binary wheel carries libpq: no system package is needed.  The report files land in
# the mounted directory (/work/reports by default).
FROM python:3.12-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY planguard ./planguard
RUN pip install . && rm -rf /src

# Not root; a pipeline passes its own uid with --user so the reports it mounts stay its own.
RUN useradd --create-home --uid 10001 planguard
USER planguard
WORKDIR /work

ENTRYPOINT ["planguard"]
CMD ["--help"]
