#!/bin/sh
# Run the application as the systemd unit "app-stack" on port 8081.

ADMIN_PASSWORD="$(generate_password)"
umask 077
printf '/admin:admin:%s\n' "$ADMIN_PASSWORD" > /etc/app-stack/httpd.conf
umask 022
save_credential app-stack admin_user admin
save_credential app-stack admin_password "$ADMIN_PASSWORD"
unset ADMIN_PASSWORD

cat > /etc/systemd/system/app-stack.service <<'UNIT'
[Unit]
Description=app-stack HTTP service
After=network.target

[Service]
User=app
EnvironmentFile=/etc/app-stack/app.env
ExecStart=/bin/busybox httpd -f -p 8081 -h /opt/app/public -c /etc/app-stack/httpd.conf
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable --now app-stack.service
log_info "app-stack is listening on port 8081"
