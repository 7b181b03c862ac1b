FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streams ./streams
COPY projections ./projections
COPY api ./api
RUN pip install --no-cache-dir .
ENV TASKSTREAM_HTTP_HOST=0.0.0.0 \
    TASKSTREAM_DATA_DIR=/var/lib/taskstream
EXPOSE 8080
ENTRYPOINT ["taskstream"]
CMD ["run", "--demo"]
