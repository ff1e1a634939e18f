# The same as `make test`, in a container. Run it privileged (namespaces, nftables):
#   docker build -t mip6bench . && docker run --rm --privileged mip6bench
FROM debian:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends make python3 python3-venv git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make setup
CMD ["make", "test"]
