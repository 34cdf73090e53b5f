# The site's image: web (gunicorn), Celery worker and beat all run from it (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    VAR_DIR=/app/var

WORKDIR /app
RUN useradd --create-home --uid 1000 app

# Dependencies first, so code changes don't reinstall them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Editable, so the project's stevedore entry points (channels, policies, resolvers) register.
# Static files are collected into the image; whitenoise serves them. The key is a throwaway:
# production settings refuse to load without one, and collectstatic signs nothing.
RUN pip install --no-cache-dir --no-deps -e . \
    && DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--no-control-socket"]
