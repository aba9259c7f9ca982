# syntax=docker/dockerfile:1
#
# Static sr-wrapper, sr-registry and srctl in minimal images.
#
#   docker build --target sr-wrapper  -t sr-wrapper .
#   docker build --target sr-registry -t sr-registry .
#
# To wrap another image's program, copy the wrapper in and put it in front
# of the program as the ENTRYPOINT: it then runs as PID 1, reaps orphaned
# zombies, forwards signals (docker stop's TERM deregisters first) and
# exits with the program's status.
#
#   FROM nginx:1.27
#   COPY --from=sr-wrapper /sr-wrapper /usr/local/bin/sr-wrapper
#   ENTRYPOINT ["/usr/local/bin/sr-wrapper", "--id=web1", "--tags=http,nginx", \
#               "--stop-signal=QUIT", "--"]
#   CMD ["nginx", "-g", "daemon off;"]
#
#   docker run -e SR_REGISTRY_URL=http://registry:8181/v1.0 \
#              -e SR_USERNAME=ops -e SR_API_KEY=... my-nginx
#
# The test internal/packaging's TestStaticWrapperAsPID1InEmptyRoot builds
# the same static binary and checks what this image promises (PID 1 in an
# empty root: reaping, signals, exit status) without a Docker engine.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/sr-wrapper/sr-wrapper/internal/buildinfo.version=${VERSION} -X github.com/sr-wrapper/sr-wrapper/internal/buildinfo.commit=${COMMIT} -X github.com/sr-wrapper/sr-wrapper/internal/buildinfo.date=${DATE}" \
      -o /out/ ./cmd/sr-wrapper ./cmd/sr-wrapper-etcd ./cmd/sr-registry ./cmd/srctl

# The wrapper alone, for COPY --from into other images. distroless/static
# brings CA certificates (https registries) and a nonroot user; the wrapper
# runs the child as whatever user the final image says.
FROM gcr.io/distroless/static-debian12:nonroot AS sr-wrapper
COPY --from=build /out/sr-wrapper /out/sr-wrapper-etcd /out/srctl /
USER nonroot
ENTRYPOINT ["/sr-wrapper"]

# The registry server, non-root, state in the /data volume.
FROM gcr.io/distroless/static-debian12:nonroot AS sr-registry
COPY --from=build /out/sr-registry /out/srctl /
USER nonroot
VOLUME ["/data"]
EXPOSE 8181
ENTRYPOINT ["/sr-registry", "--listen=0.0.0.0:8181", "--data-dir=/data"]
CMD ["--credentials=/etc/sr-registry/credentials"]
