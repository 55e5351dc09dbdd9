# coldfront's image: `docker build -t registry.example.com/platform/coldfront:0.1.0 .`
# Runs `coldfront proxy --config /etc/coldfront/config.yaml` (deploy/base mounts the config
# there); `coldfront sim ...` from the same image is the vLLM simulator of deploy/sim.
#
# Node 24 comes from the base image, pinned to the release of the package.json devDependency
# `node` (the Node the tests run on; test/deploy/dockerfile.test.ts keeps the two the same). That
# devDependency is a build-time tool only: the runtime stage installs production dependencies
# alone, so it is not there.
ARG NODE_IMAGE=node:24.21.0-bookworm-slim
# The OCI labels: VERSION is package.json's version (a test keeps them the same); SOURCE is where
# the image's source lives, e.g. `--build-arg SOURCE="$(git remote get-url origin)"`.
ARG VERSION=0.1.0
ARG SOURCE=https://git.example.com/platform/coldfront

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Dependencies first, so that a source change does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
ARG VERSION
ARG SOURCE
LABEL org.opencontainers.image.title="coldfront" \
      org.opencontainers.image.description="A buffering reverse proxy that makes scale-to-zero safe for LLM serving" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only. No install scripts: none of them needs one (no native addons),
# and not running them keeps the image to what the lockfile pins.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /src/dist ./dist
# The gRPC scaler loads proto/externalscaler.proto at run time (src/scaling/grpc-scaler.ts).
COPY proto ./proto
# Not root, and numeric, so the kubelet can check runAsNonRoot (deploy/base and the Helm chart run
# as 65532 too, on a read-only root filesystem with an emptyDir at /tmp).
# The application files stay owned by root: the process cannot change its own code.
USER 65532:65532
EXPOSE 8080 9090 9091
# The heap flags of src/cli.ts's first line: about 160 MB less RSS under load, no measurable CPU.
ENTRYPOINT ["node", "--max-semi-space-size=4", "--heap-growing-percent=50", "dist/cli.js"]
CMD ["proxy", "--config", "/etc/coldfront/config.yaml"]
