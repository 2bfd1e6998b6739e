# infrahaus helper library, sourced before every template setup script:
#   bash -c 'source infrahaus-helpers.sh; source NN-script.sh'
# Functions only; it changes no shell options so scripts keep the semantics they were written for.

INFRAHAUS_CREDENTIALS_DIR="${INFRAHAUS_CREDENTIALS_DIR:-/etc/infrahaus/credentials}"
INFRAHAUS_OS_RELEASE="${INFRAHAUS_OS_RELEASE:-/etc/os-release}"

log_info() { printf '[INFO] %s\n' "$*"; }
log_warn() { printf '[WARN] %s\n' "$*" >&2; }
log_error() { printf '[ERROR] %s\n' "$*" >&2; }

# save_credential SERVICE KEY VALUE
# Stores KEY=VALUE in $INFRAHAUS_CREDENTIALS_DIR/SERVICE (mode 600, directory mode 700), replacing
# an earlier value of KEY. Service discovery reads these files and stores them encrypted.
save_credential() {
    if [ "$#" -ne 3 ]; then
        log_error "usage: save_credential SERVICE KEY VALUE"
        return 2
    fi
    local service="$1" key="$2" value="$3"
    if ! [[ "$service" =~ ^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$ ]]; then
        log_error "save_credential: invalid service name"
        return 2
    fi
    if ! [[ "$key" =~ ^[A-Za-z_][A-Za-z0-9_]{0,63}$ ]]; then
        log_error "save_credential: invalid key name"
        return 2
    fi
    case "$value" in
        *$'\n'* | *$'\r'*)
            log_error "save_credential: a value cannot contain a line break"
            return 2
            ;;
    esac
    local file="$INFRAHAUS_CREDENTIALS_DIR/$service" tmp line
    (
        umask 077
        mkdir -p "$INFRAHAUS_CREDENTIALS_DIR" || exit 1
        chmod 700 "$INFRAHAUS_CREDENTIALS_DIR" || exit 1
        tmp="$(mktemp "$INFRAHAUS_CREDENTIALS_DIR/.${service}.XXXXXX")" || exit 1
        if [ -f "$file" ]; then
            while IFS= read -r line || [ -n "$line" ]; do
                [ "${line%%=*}" = "$key" ] || printf '%s\n' "$line"
            done <"$file" >"$tmp" || exit 1
        fi
        printf '%s=%s\n' "$key" "$value" >>"$tmp" || exit 1
        chmod 600 "$tmp" || exit 1
        mv -f "$tmp" "$file"
    ) || {
        log_error "save_credential: could not write credentials for $service"
        return 1
    }
}

# detect_os: prints the distribution id from os-release (debian, ubuntu, alpine, ...).
detect_os() {
    local id=""
    if [ -r "$INFRAHAUS_OS_RELEASE" ]; then
        id="$(
            # shellcheck disable=SC1090
            . "$INFRAHAUS_OS_RELEASE" >/dev/null 2>&1
            printf '%s' "${ID:-}"
        )"
    fi
    if [ -z "$id" ]; then
        printf 'unknown\n'
        return 1
    fi
    printf '%s\n' "$id"
}

# detect_pkg_manager: prints apt, dnf, yum, apk, pacman or zypper.
detect_pkg_manager() {
    local manager
    for manager in apt-get:apt dnf:dnf yum:yum apk:apk pacman:pacman zypper:zypper; do
        if command -v "${manager%%:*}" >/dev/null 2>&1; then
            printf '%s\n' "${manager#*:}"
            return 0
        fi
    done
    log_error "detect_pkg_manager: no known package manager found"
    return 1
}

# run_as_user USER CMD [ARG...]: runs a command as USER. Several arguments are run as an argv list
# (no shell parsing); a single argument is a command line for `sh -c`, like `su -c` takes it.
run_as_user() {
    if [ "$#" -lt 2 ]; then
        log_error "usage: run_as_user USER CMD [ARG...]"
        return 2
    fi
    local user="$1"
    shift
    if ! [[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
        log_error "run_as_user: invalid user name"
        return 2
    fi
    if [ "$#" -eq 1 ]; then
        set -- sh -c "$1"
    fi
    if [ "$(id -un 2>/dev/null)" = "$user" ]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$user" -- "$@"
    elif command -v setpriv >/dev/null 2>&1; then
        setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
    else
        su -s /bin/sh -c '"$0" "$@"' "$user" -- "$@"
    fi
}

# ensure_installed PKG...: installs the packages whose command is missing, non-interactively.
ensure_installed() {
    local pkg missing=()
    for pkg in "$@"; do
        if ! [[ "$pkg" =~ ^[A-Za-z0-9][A-Za-z0-9+._-]*$ ]]; then
            log_error "ensure_installed: invalid package name"
            return 2
        fi
        command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log_info "installing ${missing[*]}"
    case "$(detect_pkg_manager)" in
        apt) DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ;;
        dnf) dnf install -y -q "${missing[@]}" ;;
        yum) yum install -y -q "${missing[@]}" ;;
        apk) apk add --no-cache "${missing[@]}" ;;
        pacman) pacman -S --noconfirm --needed "${missing[@]}" ;;
        zypper) zypper --non-interactive install "${missing[@]}" ;;
        *) return 1 ;;
    esac
}

# generate_password [LENGTH]: prints a random alphanumeric password (default 24 characters).
generate_password() {
    local length="${1:-24}" password="" chunk
    if ! [[ "$length" =~ ^[0-9]+$ ]] || [ "$length" -lt 8 ] || [ "$length" -gt 256 ]; then
        log_error "generate_password: length must be 8..256"
        return 2
    fi
    while [ "${#password}" -lt "$length" ]; do
        # head ends before tr reads everything, so no SIGPIPE trips a caller's pipefail.
        chunk="$(head -c 96 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')" || return 1
        password="$password$chunk"
    done
    printf '%s\n' "${password:0:length}"
}
