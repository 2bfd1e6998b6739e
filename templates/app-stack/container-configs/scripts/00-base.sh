#!/bin/sh
# Base system checks and directories shared by the later scripts.

log_info "app-stack: preparing the base system"
OS_ID="$(detect_os)"
PKG_MANAGER="$(detect_pkg_manager)"
log_info "detected OS '$OS_ID' with package manager '$PKG_MANAGER'"

ensure_installed curl
mkdir -p /opt/app/public /var/log/app-stack /etc/app-stack /etc/systemd/system
