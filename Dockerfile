# The whole lab in one image: labkit, JupyterLab, Chromium, Firefox ESR, certutil, nginx and the
# socket.io client, for laptops (docker/podman), Binder, JupyterHub and dev containers.
#
#   docker build -t labkit .
#   docker run --rm -p 127.0.0.1:8888:8888 labkit      # then open the 127.0.0.1 URL it prints
#
# Binder uses this file (repo2docker picks a Dockerfile before environment.yml). Every lab listener
# binds loopback inside the container; only JupyterLab (8888) is meant to be published, and only on
# the host's loopback. bench/container.py builds and tests this image.
FROM debian:bookworm

# Binder and JupyterHub pass these; 1000 is what both expect.
ARG NB_USER=jovyan
ARG NB_UID=1000

# A bare bookworm lists only `bookworm main`: without the security suite Debian's Chromium is
# releases behind (150 instead of 156 when this was written). The official image lists it already;
# add it only where it is missing.
RUN set -eux; \
    if ! grep -rqs 'bookworm-security' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
        echo 'deb http://deb.debian.org/debian-security bookworm-security main' \
            > /etc/apt/sources.list.d/bookworm-security.list; \
        echo 'deb http://deb.debian.org/debian bookworm-updates main' \
            > /etc/apt/sources.list.d/bookworm-updates.list; \
    fi; \
    apt-get update -q; \
    DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q; \
    # libatomic1: Playwright's Node driver dies at start without it. chromium-headless-shell:
    # labkit's headless visits (about half the CPU of full Chromium). fonts: legible screenshots.
    # xvfb: the tests show the instructor's live mode on a virtual display. tini: PID 1 that
    # reaps the browsers' and nginx's children and forwards Ctrl-C / docker stop.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates python3-venv make npm libatomic1 \
        chromium chromium-headless-shell firefox-esr libnss3-tools nginx xvfb tini \
        fonts-liberation fonts-dejavu-core; \
    # The downloaded .deb files (over 400 MB): the official image's apt drops them by itself.
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*

# The non-root user, in group `users` (gid 100, JupyterHub's default fsGroup) so that a volume
# mounted on the working copy is writable.
RUN useradd --create-home --shell /bin/bash --uid "${NB_UID}" --groups users "${NB_USER}"

# LABKIT_CHROMIUM_SANDBOX=auto: Chromium keeps its sandbox where the container allows user
# namespaces (podman's default seccomp profile does) and runs without it where they are forbidden
# (Docker's default profile): it loads only the lab's own loopback pages, and the container is the
# boundary. `labkit doctor` says which.
ENV USER=${NB_USER} \
    HOME=/home/${NB_USER} \
    LANG=C.UTF-8 \
    LABKIT_CHROMIUM_SANDBOX=auto \
    PATH=/home/${NB_USER}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER ${NB_USER}
WORKDIR /home/${NB_USER}

# Dependencies first, from the files that name them, so that editing labkit or a notebook rebuilds
# only the layers below (seconds), not the downloads (minutes).
COPY --chown=${NB_UID}:${NB_UID} pyproject.toml package.json package-lock.json ./
RUN set -eux; \
    python3 -m venv .venv; \
    .venv/bin/pip install -q --no-cache-dir --upgrade pip; \
    python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + [r for e in p["optional-dependencies"].values() for r in e]))' \
        > /tmp/requirements.txt; \
    # jupyterhub: its `jupyterhub-singleuser` is what JupyterHub starts; notebook: what Binder starts.
    .venv/bin/pip install -q --no-cache-dir -r /tmp/requirements.txt jupyterhub notebook; \
    npm ci --no-audit --no-fund --loglevel=error; \
    touch node_modules/.installed; \
    rm -rf /tmp/requirements.txt .npm

# The repository, then exactly what a participant runs (`make setup`) as the same non-root user.
# No lab CA is made here: each container makes its own at first use, so no key ships in the image.
COPY --chown=${NB_UID}:${NB_UID} . ./
RUN set -eux; \
    PIP_NO_CACHE_DIR=1 make setup; \
    python -m ipykernel install --sys-prefix --name labkit --display-name "labkit (Python 3)"; \
    python -m labkit.notebook.nbtools --workshop notebooks workshop; \
    # JupyterLab, JupyterHub's single-user server and Binder all open on the working copy.
    printf '{"ServerApp": {"root_dir": "%s/workshop"}}\n' "$HOME" \
        > .venv/etc/jupyter/jupyter_server_config.json; \
    rm -rf .npm .cache/pip

EXPOSE 8888
# On every start, copy any notebook missing from workshop/ (an empty volume mounted there fills up;
# existing work is never overwritten), then run the command.
ENTRYPOINT ["tini", "--", "/bin/sh", "-c", "python -m labkit.notebook.nbtools --workshop \"$HOME/notebooks\" \"$HOME/workshop\" >/dev/null || echo 'labkit: could not fill workshop/' >&2; exec \"$@\"", "labkit-start"]
# 0.0.0.0 inside the container: JupyterLab is the one published port; publish it on the host's
# loopback (-p 127.0.0.1:8888:8888). It prints its URL with the token.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]
