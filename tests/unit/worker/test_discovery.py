"""Discovery parsers fed with output shaped like real Debian 12 containers."""

# ruff: noqa: E501, S104  (verbatim tool output and wildcard addresses are the test data)

import subprocess

from infrahaus_worker.discovery import (
    DISCOVERY_SCRIPT,
    SECTION_MARK,
    Discovery,
    Listener,
    build_services,
    is_system_unit,
    parse_credentials,
    parse_discovery_output,
    parse_listeners,
    parse_main_pids,
    parse_procs,
    parse_units,
    service_url,
)

UNITS = """\
console-getty.service              loaded active running Console Getty
cron.service                       loaded active running Regular background program processing daemon
dbus.service                       loaded active running D-Bus System Message Bus
nginx.service                      loaded active running A high performance web server and a reverse proxy server
postfix@-.service                  loaded active running Postfix Mail Transport Agent (instance -)
postgresql@15-main.service         loaded active running PostgreSQL Cluster 15-main
ssh.service                        loaded active running OpenBSD Secure Shell server
systemd-journald.service           loaded active running Journal Service
systemd-logind.service             loaded active running User Login Management
\u25cf app.service                    loaded active running My App
"""

SHOW = """\
Id=nginx.service
MainPID=812

Id=postgresql@15-main.service
MainPID=700

Id=ssh.service
MainPID=301

Id=cron.service
MainPID=0

Id=app.service
MainPID=950
"""

SS = """\
LISTEN 0      511          0.0.0.0:80         0.0.0.0:*    users:(("nginx",pid=814,fd=6),("nginx",pid=813,fd=6),("nginx",pid=812,fd=6))
LISTEN 0      511             [::]:80            [::]:*    users:(("nginx",pid=814,fd=7),("nginx",pid=813,fd=7),("nginx",pid=812,fd=7))
LISTEN 0      244        127.0.0.1:5432       0.0.0.0:*    users:(("postgres",pid=700,fd=6))
LISTEN 0      244            [::1]:5432          [::]:*    users:(("postgres",pid=700,fd=5))
LISTEN 0      128          0.0.0.0:22         0.0.0.0:*    users:(("sshd",pid=301,fd=3))
LISTEN 0      128             [::]:22            [::]:*    users:(("sshd",pid=301,fd=4))
LISTEN 0      4096               *:3000             *:*    users:(("node",pid=962,fd=20))
LISTEN 0      100    127.0.0.53%lo:53         0.0.0.0:*
LISTEN 0      4096   [::ffff:127.0.0.1]:9229      *:*    users:(("ruby",pid=1200,fd=9))
garbage line
"""

PROCS = """\
1 0 -
301 1 ssh.service
700 1 postgresql@15-main.service
812 1 -
813 812 -
814 812 -
950 1 -
955 950 -
962 955 -
"""


def test_parse_units_strips_suffix_and_bullets() -> None:
    units = parse_units(UNITS)
    assert [u.name for u in units] == [
        "console-getty",
        "cron",
        "dbus",
        "nginx",
        "postfix@-",
        "postgresql@15-main",
        "ssh",
        "systemd-journald",
        "systemd-logind",
        "app",
    ]
    assert units[3].description.startswith("A high performance web server")
    assert all(u.sub == "running" for u in units)


def test_parse_main_pids_skips_zero() -> None:
    assert parse_main_pids(SHOW) == {"nginx": 812, "postgresql@15-main": 700, "ssh": 301, "app": 950}


def test_parse_listeners_ipv4_ipv6_and_wildcards() -> None:
    listeners = parse_listeners(SS)
    assert [(x.address, x.port, x.family) for x in listeners] == [
        ("0.0.0.0", 80, "ipv4"),
        ("::", 80, "ipv6"),
        ("127.0.0.1", 5432, "ipv4"),
        ("::1", 5432, "ipv6"),
        ("0.0.0.0", 22, "ipv4"),
        ("::", 22, "ipv6"),
        ("*", 3000, "any"),
        ("127.0.0.53", 53, "ipv4"),
        ("::ffff:127.0.0.1", 9229, "ipv6"),
    ]
    assert listeners[0].processes == (("nginx", 814), ("nginx", 813), ("nginx", 812))
    assert listeners[7].processes == ()
    assert listeners[2].loopback_only
    assert listeners[3].loopback_only
    assert listeners[8].loopback_only
    assert not listeners[1].loopback_only


def test_parse_listeners_accepts_netid_column() -> None:
    text = 'tcp   LISTEN 0 128 0.0.0.0:8080 0.0.0.0:* users:(("python3",pid=10,fd=3))'
    assert parse_listeners(text) == [
        Listener(address="0.0.0.0", port=8080, family="ipv4", processes=(("python3", 10),))
    ]


def test_parse_procs_parents_and_cgroups() -> None:
    parents, cgroups = parse_procs(PROCS + "garbage\n")
    assert parents[962] == 955
    assert parents[955] == 950
    assert parents[1] == 0
    assert len(parents) == 9
    assert cgroups == {301: "ssh", 700: "postgresql@15-main"}


def test_cgroup_wins_over_a_missing_main_pid() -> None:
    discovery = parse_discovery_output(
        f"{SECTION_MARK}units\nweb.service loaded active running web\n{SECTION_MARK}ports\n"
        'LISTEN 0 511 0.0.0.0:8080 0.0.0.0:* users:(("httpd",pid=41,fd=3))\n'
        f"{SECTION_MARK}procs\n41 1 web.service\n"
    )
    [service] = build_services(discovery)
    assert service.name == "web"
    assert service.ports == [8080]


def test_parse_credentials_formats() -> None:
    text = "# saved by setup\nDB_USER=app\nexport DB_PASSWORD=\"s3cr=t\"\nbad key=1\n\nTOKEN='abc'\n"
    assert parse_credentials(text) == {"DB_USER": "app", "DB_PASSWORD": "s3cr=t", "TOKEN": "abc"}


def _discovery() -> Discovery:
    text = "\n".join(
        [
            f"{SECTION_MARK}units",
            UNITS,
            f"{SECTION_MARK}pids",
            SHOW,
            f"{SECTION_MARK}ports",
            SS,
            f"{SECTION_MARK}procs",
            PROCS,
            f"{SECTION_MARK}credentials postgresql@15-main",
            "PGUSER=app\nPGPASSWORD=pw-1\n",
            f"{SECTION_MARK}credentials grafana.env",
            "ADMIN_PASSWORD=pw-2\n",
            f"{SECTION_MARK}credentials empty",
            "",
        ]
    )
    return parse_discovery_output(text)


def test_sections_are_split() -> None:
    discovery = _discovery()
    assert len(discovery.units) == 10
    assert len(discovery.listeners) == 9
    assert discovery.credentials == {
        "postgresql@15-main": {"PGUSER": "app", "PGPASSWORD": "pw-1"},
        "grafana": {"ADMIN_PASSWORD": "pw-2"},
    }


def test_build_services_matches_pids_children_and_credentials() -> None:
    services = {s.name: s for s in build_services(_discovery(), ip_address="10.0.0.5")}
    nginx = services["nginx"]
    assert nginx.ports == [80]
    assert nginx.url == "http://10.0.0.5"
    assert not nginx.is_system
    # node listens from a grandchild of app.service's main PID
    assert services["app"].ports == [3000]
    assert services["app"].url == "http://10.0.0.5:3000"
    pg = services["postgresql@15-main"]
    assert pg.ports == [5432]
    assert pg.credentials == {"PGUSER": "app", "PGPASSWORD": "pw-1"}
    assert pg.url is None
    assert services["ssh"].is_system
    assert services["ssh"].ports == [22]
    assert services["cron"].ports == []
    # A listener no unit owns is still reported, by process name or port.
    assert services["ruby"].type == "process"
    assert services["ruby"].ports == [9229]
    assert services["port-53"].ports == [53]
    # Credentials without a unit still form a service.
    assert services["grafana"].type == "credentials"
    assert services["grafana"].credentials == {"ADMIN_PASSWORD": "pw-2"}
    ordered = build_services(_discovery())
    first_system = next(i for i, s in enumerate(ordered) if s.is_system)
    assert all(s.is_system for s in ordered[first_system:])


def test_process_name_fallback_without_proc() -> None:
    discovery = parse_discovery_output(
        f"{SECTION_MARK}units\nnginx.service loaded active running nginx\n{SECTION_MARK}ports\n"
        'LISTEN 0 511 0.0.0.0:8080 0.0.0.0:* users:(("nginx",pid=77,fd=6))\n'
    )
    [service] = build_services(discovery, ip_address="fd00::5")
    assert service.ports == [8080]
    assert service.url == "http://[fd00::5]:8080"


def test_public_ports_sort_before_loopback() -> None:
    discovery = parse_discovery_output(
        f"{SECTION_MARK}units\napp.service loaded active running app\n{SECTION_MARK}pids\nId=app.service\nMainPID=5\n"
        f"{SECTION_MARK}ports\n"
        'LISTEN 0 1 127.0.0.1:81 0.0.0.0:* users:(("app",pid=5,fd=6))\n'
        'LISTEN 0 1 0.0.0.0:9000 0.0.0.0:* users:(("app",pid=5,fd=7))\n'
    )
    [service] = build_services(discovery)
    assert service.ports == [9000, 81]
    assert service.port == 9000


def test_system_unit_classification() -> None:
    assert is_system_unit("systemd-networkd")
    assert is_system_unit("getty@tty1")
    assert is_system_unit("cron")
    assert not is_system_unit("nginx")
    assert not is_system_unit("postgresql@15-main")


def test_service_url_https_and_none() -> None:
    assert service_url("10.0.0.2", [443]) == "https://10.0.0.2"
    assert service_url("10.0.0.2", [22, 8443]) == "https://10.0.0.2:8443"
    assert service_url(None, [80]) is None
    assert service_url("10.0.0.2", [22]) is None


def test_discovery_script_is_valid_bash() -> None:
    result = subprocess.run(["bash", "-n", "-c", DISCOVERY_SCRIPT], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
