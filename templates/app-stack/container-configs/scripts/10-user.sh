#!/bin/sh
# Create the unprivileged service user "app" that owns the application files.

APP_USER=app
if id "$APP_USER" >/dev/null 2>&1; then
    log_info "user $APP_USER already exists"
elif command -v useradd >/dev/null 2>&1; then
    useradd --system --create-home --home-dir /home/$APP_USER --shell /bin/sh "$APP_USER"
else
    # busybox systems have adduser instead of useradd
    adduser -S -D -h /home/$APP_USER -s /bin/sh "$APP_USER"
fi

if ! id "$APP_USER" >/dev/null 2>&1; then
    log_error "could not create user $APP_USER"
    exit 1
fi
mkdir -p /home/$APP_USER
chown -R "$APP_USER" /home/$APP_USER /opt/app /var/log/app-stack
log_info "service user $APP_USER is ready"
