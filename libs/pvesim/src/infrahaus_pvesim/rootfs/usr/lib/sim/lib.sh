# Shared helpers of the simulated system tools. State lives in files inside the container:
#   /var/lib/sim/active/<unit>   present while the unit runs: MainPID=, PIDs= (main first, then children)
#   /var/lib/sim/listen/<unit>   its listening sockets: "tcp <addr> <port> <pid> <comm> <fd>"
#   /var/log/journal/<unit>.log  journal lines: "<timestamp>\t<identifier>\t<message>"
#   /var/lib/sim/next-pid        PID allocator
SIM=/var/lib/sim
UNIT_DIRS="/etc/systemd/system /run/systemd/system /lib/systemd/system /usr/lib/systemd/system"

sim_unit_name() {
  case "$1" in
    *.service|*.socket|*.timer|*.target|*.mount|*.path) printf '%s\n' "$1" ;;
    *) printf '%s.service\n' "$1" ;;
  esac
}

# Prints the unit file path (following aliases such as sshd.service -> ssh.service) or fails.
sim_unit_file() {
  local d
  for d in $UNIT_DIRS; do
    if [ -f "$d/$1" ]; then printf '%s\n' "$d/$1"; return 0; fi
  done
  return 1
}

# Canonical unit name: an alias symlink resolves to the unit it points at.
sim_canonical() {
  local f
  f=$(sim_unit_file "$1") || { printf '%s\n' "$1"; return; }
  if [ -L "$f" ]; then basename "$(readlink -f "$f")"; else printf '%s\n' "$1"; fi
}

# Value(s) of Key= in a unit file section; one per line.
sim_unit_key() {
  local file=$1 section=$2 key=$3
  awk -v sec="[$section]" -v key="$key" '
    /^\[/ { insec = ($0 == sec); next }
    insec && index($0, key "=") == 1 { print substr($0, length(key) + 2) }
  ' "$file"
}

sim_alloc_pid() {
  local pid
  pid=$(cat "$SIM/next-pid" 2>/dev/null || echo 300)
  echo $((pid + ${1:-1})) > "$SIM/next-pid"
  printf '%s\n' "$pid"
}

sim_journal() {
  printf '%s\t%s\t%s\n' "$(date '+%b %d %H:%M:%S')" "$2" "$3" >> "/var/log/journal/$1.log"
}
