#!/bin/sh
# Serve /srv/www with busybox httpd on port 8080 as the systemd unit "web".
# Sourced after the infrahaus helper library (log_info, save_credential, generate_password, ...).

WEB_ROOT=/srv/www
WEB_CONF=/etc/web-hello/httpd.conf

mkdir -p "$WEB_ROOT/admin" /etc/web-hello /etc/systemd/system
if [ ! -f "$WEB_ROOT/admin/index.html" ]; then
    printf '<!doctype html>\n<h1>web-hello admin</h1>\n' > "$WEB_ROOT/admin/index.html"
fi

# The admin password is generated per container and handed to the credentials store.
ADMIN_PASSWORD="$(generate_password)"
umask 077
printf '/admin:admin:%s\n' "$ADMIN_PASSWORD" > "$WEB_CONF"
umask 022
save_credential web admin_user admin
save_credential web admin_password "$ADMIN_PASSWORD"
unset ADMIN_PASSWORD

cat > /etc/systemd/system/web.service <<'UNIT'
[Unit]
Description=web-hello static site (busybox httpd)
After=network.target

[Service]
ExecStart=/bin/busybox httpd -f -p 8080 -h /srv/www -c /etc/web-hello/httpd.conf
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable --now web.service
log_info "web-hello is serving $WEB_ROOT on port 8080"
