# storybot on a CUDA-capable PyTorch image; runs on the CPU too when no GPU is given.
#   docker build -t storybot .
#   docker run --gpus all -e DISCORD_TOKEN -v storybot-data:/home/storybot/data \
#     -v storybot-models:/home/storybot/.cache/huggingface storybot
FROM pytorch/pytorch:2.8.0-cuda12.9-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/home/storybot/.cache/huggingface

RUN useradd --create-home --uid 1000 storybot
WORKDIR /opt/storybot
COPY pyproject.toml README.md config.example.toml ./
COPY bot ./bot
# The same install as the README's run command; torch comes from the base image.
RUN pip install .

USER storybot
WORKDIR /home/storybot
RUN mkdir -p data .cache/huggingface
# Stories (SQLite) and downloaded models survive the container.
VOLUME ["/home/storybot/data", "/home/storybot/.cache/huggingface"]
# Mount a config file and point STORYBOT_CONFIG at it, e.g. -v ./config.toml:/config/config.toml:ro
# -e STORYBOT_CONFIG=/config/config.toml; without one the defaults in config.example.toml apply.
# `docker stop` sends SIGTERM: parts being written get discord.drain_s (20 s) to finish, then are
# saved as they are. Give it longer than that: `docker stop -t 30` (compose: stop_grace_period).
CMD ["storybot", "run"]
