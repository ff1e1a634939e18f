# The same as `make test`, in a container. Run it privileged (namespaces, nftables):
#   docker build -t mip6bench . && docker run --rm --privileged mip6bench
# (`make test-container` builds and runs it with podman, no registry needed.)
FROM debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends make python3 python3-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Debian packages and pinned Python dependencies first, from the two files that name
# them: a change to the sources then rebuilds only the layers below.
COPY Makefile requirements.txt ./
RUN make requirements && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make setup
CMD ["make", "test"]
