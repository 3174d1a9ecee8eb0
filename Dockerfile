# CPU image: `docker build -t edgetl . && docker run --rm edgetl demo`
# (GPU: build FROM a CUDA base image and `pip install ".[gpu]"`; a TensorFlow-free image for
# checking artifacts: `pip install .` alone, see README "On a device".)
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 1000 edgetl
WORKDIR /opt/edgetl

# Dependencies first, from pyproject.toml alone, so a code edit does not reinstall TensorFlow.
COPY pyproject.toml README.md ./
RUN mkdir -p edgetl models && touch edgetl/__init__.py \
    && pip install ".[train]" \
    && pip uninstall -y edgetl

COPY edgetl ./edgetl
COPY models ./models
RUN pip install --no-deps .

USER edgetl
WORKDIR /home/edgetl
ENTRYPOINT ["edgetl"]
CMD ["--help"]
