# One image for web, worker and beat (see docker-compose.yml).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHON=python3.11
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
COPY agents ./agents
COPY policies ./policies
COPY runs ./runs
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir -e . && touch .venv/bin/.installed
COPY . .
RUN touch .venv/bin/.installed
EXPOSE 8000
CMD ["make", "web", "HOST=0.0.0.0"]
