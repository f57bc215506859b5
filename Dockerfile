# ambassador in a container: a static binary on a small base.
#   docker build -t ambassador .
#   docker run --rm --network host ambassador --announce redis:6379=12345
# See contrib/compose.yaml. Host networking is the point: the node must see
# the LAN's multicast and bind the service ports on the host's loopback.

# The final stage's base. An ARG used in a FROM line must come before the
# first FROM (one declared inside a stage is that stage's only, and the
# build stops with "base name (${BASE}) should not be blank"). The default,
# distroless/static: no shell, no package manager, no libc; CA certificates,
# /etc/passwd and tzdata only (about 2 MB). Health checks of kind exec:CMD
# run /bin/sh, which this base lacks: for those, build with
#   docker build --build-arg BASE=debian:bookworm-slim .
# The binary is static, so --build-arg BASE=scratch works too.
ARG BASE=gcr.io/distroless/static-debian12

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
# third_party/ holds the patched urfave/cli and go-msgpack that go.mod's
# replace lines point at; go mod download reads their go.mod.
COPY go.mod go.sum ./
COPY third_party/ third_party/
RUN go mod download
COPY . .
# VERSION is what `ambassador version` prints (the build has no .git, see
# .dockerignore, so no commit is stamped): docker build --build-arg VERSION=v1.2.3 .
ARG VERSION=""
# Static: no cgo, so no libc to match on the base. Keep this line in step
# with TestDockerBuildIsStatic, which runs the same command.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -tags urfave_cli_no_docs,nethttpomithttp2 -ldflags "-s -w -X main.version=${VERSION}" -o /out/ambassador .

# It runs as root on purpose: the node binds service ports below 1024 and
# may write /etc/hosts; give the container only CAP_NET_BIND_SERVICE (see
# compose.yaml).
FROM ${BASE}
COPY --from=build /out/ambassador /usr/local/bin/ambassador
# SIGTERM is the graceful leave; docker's default stop timeout (10s) is
# shorter than --drain-timeout (30s): use docker stop -t 45.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ambassador"]
