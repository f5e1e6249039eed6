# syntax=docker/dockerfile:1
# Patchfleet advisory-ingest. Build from the repository root (the Go workspace):
#   docker build -f deployments/containers/advisory-ingest.Dockerfile -t patchfleet/advisory-ingest:$VERSION .
FROM golang:1.26 AS build
WORKDIR /src
# Module files first, so the download layer is reused until a dependency changes. go.work
# names every module, so all of their go.mod files must be present.
COPY go.work go.work.sum ./
COPY events/go.mod events/go.sum events/
COPY db/go.mod db/go.sum db/
COPY tools/go.mod tools/go.sum tools/
COPY services/advisory-ingest/go.mod services/advisory-ingest/go.sum services/advisory-ingest/
COPY services/inventory/go.mod services/inventory/go.sum services/inventory/
COPY services/planner/go.mod services/planner/go.sum services/planner/
COPY services/executor/go.mod services/executor/go.sum services/executor/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/advisory-ingest ./services/advisory-ingest/cmd/advisory-ingest

# Static binary, no shell, runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/advisory-ingest /usr/local/bin/advisory-ingest
ENV PATCHFLEET_HTTP_ADDR=0.0.0.0:8081 \
    PATCHFLEET_LOG_FORMAT=json
EXPOSE 8081
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/advisory-ingest"]
