# storybot. One file, two images:
#   docker build -t storybot .        PyTorch with CUDA: the GPU when given (--gpus all), else CPU
#   docker build -t storybot:cpu --build-arg BASE=python:3.11-slim \
#     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .      CPU only, much smaller
# Run it with compose (compose.yaml), or:
#   docker run -e DISCORD_TOKEN -v storybot-data:/home/storybot/data \
#     -v storybot-models:/home/storybot/.cache/huggingface storybot
#   docker run -it -v storybot-data:/home/storybot/data storybot console
ARG BASE=pytorch/pytorch:2.8.0-cuda12.9-cudnn9-runtime
FROM ${BASE}
ARG TORCH_INDEX=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STORYBOT_HOME=/home/storybot/data \
    HF_HOME=/home/storybot/.cache/huggingface

RUN useradd --create-home --uid 1000 storybot
WORKDIR /opt/storybot
# The dependencies in a layer of their own, built from pyproject.toml alone, so that a change to
# the code does not reinstall them. The CUDA base image brings torch; the CPU one gets it from
# PyTorch's CPU index (the same version as the README's commands).
COPY pyproject.toml README.md ./
RUN mkdir bot && touch bot/__init__.py \
    && if [ -n "$TORCH_INDEX" ]; then pip install torch==2.13.0 --index-url "$TORCH_INDEX"; fi \
    && pip install . && pip uninstall --yes storybot && rm -rf bot build
# The code: the same install as the README's run command.
COPY bot ./bot
RUN pip install --no-deps .

USER storybot
WORKDIR /home/storybot
RUN mkdir -p data .cache/huggingface
# Stories, the config `storybot init` writes and the health file; downloaded models.
VOLUME ["/home/storybot/data", "/home/storybot/.cache/huggingface"]
# `storybot health` reads the file a running bot refreshes every 30 s: unhealthy when it is stale
# or the bot is not connected to Discord.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 CMD ["storybot", "health"]
# `docker stop` sends SIGTERM: parts being written get discord.drain_s (20 s) to finish, then are
# saved as they are. Give it longer than that: `docker stop -t 30` (compose: stop_grace_period).
# On the first start, a commented config.toml is written to the data volume (storybot init).
ENTRYPOINT ["sh", "-c", "storybot init --keep >&2 && exec storybot \"$@\"", "storybot"]
CMD ["run"]
