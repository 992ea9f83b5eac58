# Built as -f build.Dockerfile: build.Dockerfile.dockerignore wins over the context's .dockerignore.
FROM {{BASE}}
COPY . /ctx/
