"""The on-disk template format (the seeds' layout), parsed without running a shell.

```
<root>/<dir>/template.conf                          TEMPLATE_* shell assignments
<root>/<dir>/container-configs/scripts/NN-name.sh   setup scripts, run in numeric order
<root>/<dir>/container-configs/packages/<group>.<apt|npm|pip>   one package per line
<root>/<dir>/container-configs/files/<name>         file content, with sidecars
    <name>.path    target directory (required)
    <name>.policy  replace | default | backup (optional, default "default")
    <name>.mode    octal mode (optional, default 0644)
```

`template.conf` keys (the original names first, aliases after the slash):
TEMPLATE_APP/TEMPLATE_NAME, TEMPLATE_DESCRIPTION, TEMPLATE_TAGS (";"- or ","-separated),
TEMPLATE_CPU/TEMPLATE_CORES, TEMPLATE_RAM/TEMPLATE_MEMORY (MB), TEMPLATE_SWAP (MB),
TEMPLATE_DISK (GB), TEMPLATE_OSTEMPLATE (volid or short name; otherwise TEMPLATE_OS and
TEMPLATE_VERSION give ``<os>-<version>-standard``), TEMPLATE_STORAGE, TEMPLATE_BRIDGE,
TEMPLATE_UNPRIVILEGED, TEMPLATE_NESTING, TEMPLATE_KEYCTL, TEMPLATE_FUSE (1/0, true/false,
yes/no, on/off). Other variables are allowed and ignored.
"""

import errno
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path

import msgspec

from infrahaus_domain import allowlist as v
from infrahaus_domain.templates.schemas import TemplateFileIn, TemplatePackageIn, TemplateScriptIn, TemplateWrite

CONF_NAME = "template.conf"
CONFIGS_DIR = "container-configs"
SIDECARS = (".path", ".policy", ".mode")
PACKAGE_EXTENSIONS = {".apt": "apt", ".npm": "npm", ".pip": "pip"}
# Hard limits of discovery: templates per directory, entries per template directory, bytes per file (a script's
# or file's content limit), of template.conf and of a sidecar, and of one template in all.
MAX_TEMPLATES = 500
MAX_ENTRIES = 300
MAX_FILE_BYTES = v.MAX_CONTENT_BYTES
MAX_CONF_BYTES = 64 * 1024
MAX_SIDECAR_BYTES = 4096
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024


class TemplateFormatError(ValueError):
    """A template directory that does not follow the format; the message names the file and the problem."""


class ParsedTemplate(msgspec.Struct, kw_only=True):
    """A template read from disk: its directory name, its content and a hash of that content."""

    source_dir: str
    template: TemplateWrite
    content_hash: str


# ---------------------------------------------------------------- template.conf


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"(export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=")
_BARE_EXPORT = re.compile(r"export(?:[ \t]+[A-Za-z_][A-Za-z0-9_]*)+[ \t]*(?=$|[\n;#])")
_WORD_END = " \t\n;"
_UNSUPPORTED = "|&<>()"


class _ConfReader:
    """Reads shell variable assignments the way bash would assign them, minus command execution."""

    def __init__(self, text: str, environ: Mapping[str, str]) -> None:
        self.text = text
        self.pos = 0
        self.values: dict[str, str] = dict(environ)
        self.assigned: dict[str, str] = {}

    def error(self, message: str) -> TemplateFormatError:
        line = self.text.count("\n", 0, self.pos) + 1
        return TemplateFormatError(f"{CONF_NAME} line {line}: {message}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def read(self) -> dict[str, str]:
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in " \t\n;":
                self.pos += 1
            elif ch == "#":
                self.skip_comment()
            elif ch == "\\" and text.startswith("\\\n", self.pos):
                self.pos += 2
            elif bare := _BARE_EXPORT.match(text, self.pos):
                self.pos = bare.end()
            elif match := _ASSIGNMENT.match(text, self.pos):
                self.pos = match.end()
                value = self.word(_WORD_END)
                self.values[match.group(2)] = value
                self.assigned[match.group(2)] = value
                self.after_value()
            else:
                raise self.error("expected NAME=value (commands are not supported)")
        return self.assigned

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def after_value(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1
        ch = self.peek()
        if ch == "#":
            self.skip_comment()
        elif ch in ("", "\n", ";") or _ASSIGNMENT.match(self.text, self.pos):
            return
        else:
            raise self.error("unexpected text after the value (quote values that contain spaces)")

    def word(self, terminators: str) -> str:
        """One shell word up to an unquoted terminator; quotes and expansions are resolved."""
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in terminators:
                break
            if ch == "'":
                end = text.find("'", self.pos + 1)
                if end < 0:
                    raise self.error("unterminated single quote")
                out.append(text[self.pos + 1 : end])
                self.pos = end + 1
            elif ch == '"':
                self.pos += 1
                out.append(self.double_quoted())
            elif ch == "\\":
                nxt = text[self.pos + 1 : self.pos + 2]
                if nxt != "\n":
                    out.append(nxt)
                self.pos += 2
            elif ch == "$":
                out.append(self.expansion())
            elif ch == "`":
                raise self.error("command substitution is not supported")
            elif ch in _UNSUPPORTED and terminators == _WORD_END:
                raise self.error(f"unsupported shell syntax {ch!r} (quote the value)")
            else:
                out.append(ch)
                self.pos += 1
        return "".join(out)

    def double_quoted(self) -> str:
        out: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = text[self.pos + 1 : self.pos + 2]
                if nxt in ('"', "\\", "$", "`"):
                    out.append(nxt)
                elif nxt != "\n":
                    out.append("\\" + nxt)
                self.pos += 2
            elif ch == "$":
                out.append(self.expansion())
            elif ch == "`":
                raise self.error("command substitution is not supported")
            else:
                out.append(ch)
                self.pos += 1
        raise self.error("unterminated double quote")

    def expansion(self) -> str:
        """``$NAME``, ``${NAME}``, ``${NAME<op>word}`` (``:-``/``-`` default, ``:=``/``=`` assign, ``:+``/``+`` alt)."""
        text = self.text
        self.pos += 1
        if self.peek() == "(":
            raise self.error("command substitution is not supported")
        if self.peek() != "{":
            match = _NAME.match(text, self.pos)
            if not match:
                return "$"
            self.pos = match.end()
            return self.values.get(match.group(0), "")
        self.pos += 1
        match = _NAME.match(text, self.pos)
        if not match:
            raise self.error("bad parameter expansion")
        name = match.group(0)
        self.pos = match.end()
        current = self.values.get(name)
        if self.peek() == "}":
            self.pos += 1
            return current or ""
        if not self.peek():
            raise self.error(f"unterminated ${{{name}...}}")
        operator = ""
        for candidate in (":-", ":=", ":+", "-", "=", "+"):
            if text.startswith(candidate, self.pos):
                operator = candidate
                break
        if not operator:
            raise self.error(f"unsupported parameter expansion in ${{{name}...}}")
        self.pos += len(operator)
        default = self.word("}")
        if self.peek() != "}":
            raise self.error(f"unterminated ${{{name}...}}")
        self.pos += 1
        is_set = current is not None and not (operator.startswith(":") and current == "")
        if operator.endswith("+"):
            return default if is_set else ""
        if is_set:
            return current or ""
        if operator.endswith("="):
            self.values[name] = default
        return default


def parse_conf(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables assigned by a shell assignment file, in assignment order (later assignments win).

    Handles single and double quotes, backslash escapes, ``export``, ``$VAR``/``${VAR}``,
    ``${VAR:-default}``-style defaults (nested too) and comments after values. ``environ``
    provides variables assumed set before the file runs (none by default). Commands,
    command substitution and redirections raise `TemplateFormatError`.
    """
    return _ConfReader(text, environ or {}).read()


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(conf: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in conf:
        return default
    raw = conf[key].strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise TemplateFormatError(f"{CONF_NAME}: {key} must be 0 or 1, got {conf[key]!r}")


def _number(conf: Mapping[str, str], keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        if key in conf and conf[key].strip():
            raw = conf[key].strip()
            if not raw.isdigit():
                raise TemplateFormatError(f"{CONF_NAME}: {key} must be a whole number, got {raw!r}")
            return int(raw)
    return default


def _first(conf: Mapping[str, str], *keys: str) -> str | None:
    for key in keys:
        if conf.get(key, "").strip():
            return conf[key].strip()
    return None


def template_from_conf(conf: Mapping[str, str], dir_name: str) -> TemplateWrite:
    """The template's own fields from parsed ``template.conf`` variables (children left empty)."""
    os_template = _first(conf, "TEMPLATE_OSTEMPLATE", "TEMPLATE_OS_TEMPLATE")
    if os_template is None and (os_name := _first(conf, "TEMPLATE_OS")):
        version = _first(conf, "TEMPLATE_VERSION")
        os_template = f"{os_name}-{version}-standard" if version else f"{os_name}-standard"
    tags = [tag.strip() for tag in re.split(r"[;,]", conf.get("TEMPLATE_TAGS", "")) if tag.strip()]
    return TemplateWrite(
        name=_first(conf, "TEMPLATE_APP", "TEMPLATE_NAME") or dir_name,
        description=conf.get("TEMPLATE_DESCRIPTION", "").strip(),
        tags=tags,
        os_template=os_template,
        cores=_number(conf, ("TEMPLATE_CPU", "TEMPLATE_CORES"), 1),
        memory_mb=_number(conf, ("TEMPLATE_RAM", "TEMPLATE_MEMORY"), 512),
        swap_mb=_number(conf, ("TEMPLATE_SWAP",), 512),
        disk_gb=_number(conf, ("TEMPLATE_DISK",), 8),
        storage=_first(conf, "TEMPLATE_STORAGE") or "local-lvm",
        bridge=_first(conf, "TEMPLATE_BRIDGE") or "vmbr0",
        unprivileged=_flag(conf, "TEMPLATE_UNPRIVILEGED", True),
        nesting=_flag(conf, "TEMPLATE_NESTING", False),
        keyctl=_flag(conf, "TEMPLATE_KEYCTL", False),
        fuse=_flag(conf, "TEMPLATE_FUSE", False),
    )


# ---------------------------------------------------------------- container-configs


_SCRIPT_FILE = re.compile(r"(\d+)-([A-Za-z0-9._-]+)\.sh")


class _Dir:
    """One directory of a template, read through file descriptors that never follow a symbolic link.

    Template directories are read as untrusted input (their authors are not the operator): a link is refused, not
    followed (a link to `/etc/shadow` named `00-setup.sh` would otherwise publish the server's file as a script);
    only regular files are read, each at most `MAX_FILE_BYTES`, a template at most `MAX_TEMPLATE_BYTES` in all, a
    directory at most `MAX_ENTRIES` entries. Every refusal is a `TemplateFormatError` naming the path, so discovery
    reports it for that template alone.
    """

    def __init__(self, fd: int, relative: str, budget: list[int]) -> None:
        self.fd = fd
        self.relative = relative
        self._budget = budget  # bytes this template may still read (shared by its directories)

    @classmethod
    def open(cls, path: Path) -> "_Dir":
        """The template directory itself (`path` must not be a link either)."""
        return cls(_open_dir(str(path), None, path.name), path.name, [MAX_TEMPLATE_BYTES])

    def close(self) -> None:
        os.close(self.fd)

    def where(self, name: str) -> str:
        return f"{self.relative}/{name}" if self.relative else name

    def kind(self, name: str) -> str | None:
        """``file``, ``dir``, ``link`` or ``other``; None when there is no such entry."""
        try:
            mode = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"

    def subdir(self, name: str) -> "_Dir | None":
        if self.kind(name) is None:
            return None
        return _Dir(_open_dir(name, self.fd, self.where(name)), self.where(name), self._budget)

    def entries(self) -> list[tuple[str, str]]:
        """(name, kind) in name order, without hidden files and READMEs; a link anywhere is refused."""
        found: list[tuple[str, str]] = []
        with os.scandir(self.fd) as listing:
            for entry in listing:
                if entry.name.startswith(".") or entry.name.upper().startswith("README"):
                    continue
                if len(found) >= MAX_ENTRIES:
                    raise TemplateFormatError(f"{self.relative}: more than {MAX_ENTRIES} entries")
                kind = self.kind(entry.name) or "other"
                if kind == "link":
                    raise TemplateFormatError(f"{self.where(entry.name)}: a symbolic link (links are not followed)")
                found.append((entry.name, kind))
        return sorted(found)

    def read_text(self, name: str, limit: int = 0) -> str:
        """A regular file's UTF-8 text, opened without following a link and read no further than the limits."""
        limit = min(limit or MAX_FILE_BYTES, self._budget[0])
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            raise TemplateFormatError(f"{self.where(name)}: {_refusal(exc)}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TemplateFormatError(f"{self.where(name)}: not a regular file")
            data = bytearray()
            while len(data) <= limit and (chunk := os.read(fd, 65536)):
                data += chunk
        finally:
            os.close(fd)
        if len(data) > limit:
            raise TemplateFormatError(
                f"{self.where(name)}: larger than {limit} bytes (a file may hold {MAX_FILE_BYTES}, "
                f"a template {MAX_TEMPLATE_BYTES})"
            )
        self._budget[0] -= len(data)
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise TemplateFormatError(f"{self.where(name)}: not UTF-8 text") from None


def _open_dir(name: str, dir_fd: int | None, relative: str) -> int:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise TemplateFormatError(f"{relative}: {_refusal(exc)}") from None


def _refusal(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a symbolic link or not a directory (links are not followed)"
    return "cannot be read"


def _script_description(content: str) -> str:
    """The first comment line after the shebang, without a leading ``description:``."""
    for line in content.splitlines():
        stripped = line.strip()
        if stripped.startswith("#!") or not stripped:
            continue
        if not stripped.startswith("#"):
            return ""
        text = stripped.lstrip("#").strip()
        if text.lower().startswith("description:"):
            text = text[len("description:") :].strip()
        return text[: v.MAX_DESCRIPTION_CHARS]
    return ""


def parse_scripts(directory: "_Dir | None") -> list[TemplateScriptIn]:
    """``NN-name.sh`` scripts ordered by numeric prefix (then name); positions are 0, 1, 2, ..."""
    if directory is None:
        return []
    found: list[tuple[int, str]] = []
    for name, kind in directory.entries():
        match = _SCRIPT_FILE.fullmatch(name)
        if kind != "file" or not match:
            raise TemplateFormatError(f"{directory.where(name)}: scripts must be files named NN-name.sh")
        found.append((int(match.group(1)), name))
    scripts = []
    for position, (_, file_name) in enumerate(sorted(found)):
        content = directory.read_text(file_name)
        scripts.append(
            TemplateScriptIn(
                name=file_name.removesuffix(".sh"),
                position=position,
                content=content,
                description=_script_description(content),
            )
        )
    return scripts


def parse_package_lines(text: str) -> list[tuple[int, str]]:
    """(line number, package spec) pairs from a package list; blank lines and ``#`` comments are dropped.

    A ``#`` starts a comment at the start of a line or after whitespace, as in the shell.
    """
    specs = []
    for number, line in enumerate(text.splitlines(), start=1):
        spec = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()
        if spec:
            specs.append((number, spec))
    return specs


def parse_packages(directory: "_Dir | None") -> list[TemplatePackageIn]:
    """Packages from ``<group>.<apt|npm|pip>`` files; the group becomes each package's ``bucket`` label.

    Version pins are kept (``flask==3.0.0``, ``express@4``, ``nginx=1.22*``); a package listed
    twice for one manager is kept once, at its first occurrence.
    """
    if directory is None:
        return []
    packages: list[TemplatePackageIn] = []
    seen: set[tuple[str, str]] = set()
    for name, kind in directory.entries():
        stem, dot, suffix = name.rpartition(".")
        manager = PACKAGE_EXTENSIONS.get(f".{suffix}") if dot else None
        relative = directory.where(name)
        if kind != "file" or manager is None:
            raise TemplateFormatError(f"{relative}: package lists must be files named <group>.apt|.npm|.pip")
        try:
            group = v.validate_label(stem, "package group")
        except v.UnsafeValueError as exc:
            raise TemplateFormatError(f"{relative}: {exc}") from exc
        for number, spec in parse_package_lines(directory.read_text(name)):
            try:
                package, version = v.parse_package_spec(manager, spec)
            except v.UnsafeValueError as exc:
                raise TemplateFormatError(f"{relative} line {number}: {exc}") from exc
            if (manager, package) in seen:
                continue
            seen.add((manager, package))
            packages.append(TemplatePackageIn(name=package, manager=manager, version=version, bucket=group))  # type: ignore[arg-type]
    return packages


def _sidecar(directory: "_Dir", name: str) -> str | None:
    if directory.kind(name) is None:
        return None
    for line in directory.read_text(name, MAX_SIDECAR_BYTES).splitlines():
        value = line.strip()
        if value and not value.startswith("#"):
            return value
    return None


def parse_files(directory: "_Dir | None") -> list[TemplateFileIn]:
    """Files with their ``.path`` (required), ``.policy`` and ``.mode`` sidecars."""
    if directory is None:
        return []
    files = []
    entries = directory.entries()
    names = {name for name, _ in entries}
    for name, kind in entries:
        relative = directory.where(name)
        suffix = "." + name.rpartition(".")[2] if "." in name else ""
        if suffix in SIDECARS and name.removesuffix(suffix) in names:
            continue
        if suffix in SIDECARS:
            raise TemplateFormatError(f"{relative}: sidecar without a file")
        if kind != "file":
            raise TemplateFormatError(f"{relative}: only plain files are supported")
        target = _sidecar(directory, name + ".path")
        if target is None:
            raise TemplateFormatError(f"{relative}: missing {name}.path (the target directory)")
        policy = _sidecar(directory, name + ".policy") or "default"
        mode = _sidecar(directory, name + ".mode") or "0644"
        if policy not in v.FILE_POLICIES:
            raise TemplateFormatError(f"{relative}.policy: one of {', '.join(v.FILE_POLICIES)}, got {policy!r}")
        files.append(
            TemplateFileIn(
                name=name,
                target_path=target,
                content=directory.read_text(name),
                policy=policy,  # type: ignore[arg-type]
                mode=mode,
            )
        )
    return files


def content_hash(template: TemplateWrite) -> str:
    """SHA-256 of a template's canonical JSON: equal for equal content, whatever the file times."""
    return hashlib.sha256(msgspec.json.encode(template, order="sorted")).hexdigest()


def parse_template_dir(path: Path) -> ParsedTemplate:
    """Read one template directory (never following a link, within the size limits). Raises `TemplateFormatError`
    naming the offending file."""
    top = _Dir.open(path)
    opened = [top]
    try:
        if top.kind(CONF_NAME) is None:
            raise TemplateFormatError(f"missing {CONF_NAME}")
        base = template_from_conf(parse_conf(top.read_text(CONF_NAME, MAX_CONF_BYTES)), path.name)
        configs = top.subdir(CONFIGS_DIR)
        parts: dict[str, _Dir | None] = {"scripts": None, "packages": None, "files": None}
        if configs is not None:
            opened.append(configs)
            for part in parts:
                parts[part] = configs.subdir(part)
                if parts[part] is not None:
                    opened.append(parts[part])  # type: ignore[arg-type]
        template = msgspec.structs.replace(
            base,
            scripts=parse_scripts(parts["scripts"]),
            packages=parse_packages(parts["packages"]),
            files=parse_files(parts["files"]),
        )
    finally:
        for directory in opened:
            directory.close()
    return ParsedTemplate(source_dir=path.name, template=template, content_hash=content_hash(template))


def template_dirs(root: Path) -> list[Path]:
    """Entries of ``root`` that are template directories (holding a ``template.conf``), in name order; a link is
    listed too, so that discovery reports it refused instead of skipping it silently."""
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() or (entry.is_dir() and (entry / CONF_NAME).exists()):
            found.append(entry)
    return sorted(found, key=lambda p: p.name)
