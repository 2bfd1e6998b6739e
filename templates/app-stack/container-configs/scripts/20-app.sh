#!/bin/sh
# Lay out the application: a start page and a secret key only the service user can read.

if [ ! -f /opt/app/public/index.html ]; then
    printf '<!doctype html>\n<h1>app-stack</h1>\n<p>served by app-stack.service</p>\n' > /opt/app/public/index.html
fi

SECRET_KEY="$(generate_password)"
umask 077
printf 'SECRET_KEY=%s\n' "$SECRET_KEY" > /etc/app-stack/secret.env
umask 022
chown app /etc/app-stack/secret.env
save_credential app-stack secret_key "$SECRET_KEY"
unset SECRET_KEY

run_as_user app "touch /var/log/app-stack/app.log"
log_info "application files are in /opt/app"
