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

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import msgspec

from infrahaus_domain.templates import validation as v
from infrahaus_domain.templates.schemas import TemplateFileIn, TemplatePackageIn, TemplateScriptIn, TemplateWrite

CONF_NAME = "template.conf"
CONFIGS_DIR = "container-configs"
SIDECARS = (".path", ".policy", ".mode")
PACKAGE_EXTENSIONS = {".apt": "apt", ".npm": "npm", ".pip": "pip"}


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


def _entries(directory: Path) -> list[Path]:
    """Directory entries in name order, without hidden files and READMEs; none if it does not exist."""
    if not directory.is_dir():
        return []
    return sorted(
        (p for p in directory.iterdir() if not p.name.startswith(".") and not p.name.upper().startswith("README")),
        key=lambda p: p.name,
    )


def _read_text(path: Path, root: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateFormatError(f"{path.relative_to(root)}: not UTF-8 text") from exc


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


def parse_scripts(directory: Path, root: Path) -> list[TemplateScriptIn]:
    """``NN-name.sh`` scripts ordered by numeric prefix (then name); positions are 0, 1, 2, ..."""
    found: list[tuple[int, str, Path]] = []
    for path in _entries(directory):
        match = _SCRIPT_FILE.fullmatch(path.name)
        if not path.is_file() or not match:
            raise TemplateFormatError(f"{path.relative_to(root)}: scripts must be files named NN-name.sh")
        found.append((int(match.group(1)), path.name, path))
    scripts = []
    for position, (_, file_name, path) in enumerate(sorted(found)):
        content = _read_text(path, root)
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


def parse_packages(directory: Path, root: Path) -> list[TemplatePackageIn]:
    """Packages from ``<group>.<apt|npm|pip>`` files; the group becomes each package's ``bucket`` label.

    Version pins are kept (``flask==3.0.0``, ``express@4``, ``nginx=1.22*``); a package listed
    twice for one manager is kept once, at its first occurrence.
    """
    packages: list[TemplatePackageIn] = []
    seen: set[tuple[str, str]] = set()
    for path in _entries(directory):
        manager = PACKAGE_EXTENSIONS.get(path.suffix)
        relative = path.relative_to(root)
        if not path.is_file() or manager is None:
            raise TemplateFormatError(f"{relative}: package lists must be files named <group>.apt|.npm|.pip")
        try:
            group = v.validate_label(path.stem, "package group")
        except v.UnsafeValueError as exc:
            raise TemplateFormatError(f"{relative}: {exc}") from exc
        for number, spec in parse_package_lines(_read_text(path, root)):
            try:
                name, version = v.parse_package_spec(manager, spec)
            except v.UnsafeValueError as exc:
                raise TemplateFormatError(f"{relative} line {number}: {exc}") from exc
            if (manager, name) in seen:
                continue
            seen.add((manager, name))
            packages.append(TemplatePackageIn(name=name, manager=manager, version=version, bucket=group))  # type: ignore[arg-type]
    return packages


def _sidecar(path: Path, root: Path) -> str | None:
    if not path.is_file():
        return None
    for line in _read_text(path, root).splitlines():
        value = line.strip()
        if value and not value.startswith("#"):
            return value
    return None


def parse_files(directory: Path, root: Path) -> list[TemplateFileIn]:
    """Files with their ``.path`` (required), ``.policy`` and ``.mode`` sidecars."""
    files = []
    names = {p.name for p in _entries(directory)}
    for path in _entries(directory):
        relative = path.relative_to(root)
        if path.suffix in SIDECARS and path.name.removesuffix(path.suffix) in names:
            continue
        if path.suffix in SIDECARS:
            raise TemplateFormatError(f"{relative}: sidecar without a file")
        if not path.is_file():
            raise TemplateFormatError(f"{relative}: only plain files are supported")
        target = _sidecar(path.with_name(path.name + ".path"), root)
        if target is None:
            raise TemplateFormatError(f"{relative}: missing {path.name}.path (the target directory)")
        policy = _sidecar(path.with_name(path.name + ".policy"), root) or "default"
        mode = _sidecar(path.with_name(path.name + ".mode"), root) or "0644"
        if policy not in v.FILE_POLICIES:
            raise TemplateFormatError(f"{relative}.policy: one of {', '.join(v.FILE_POLICIES)}, got {policy!r}")
        files.append(
            TemplateFileIn(
                name=path.name,
                target_path=target,
                content=_read_text(path, root),
                policy=policy,  # type: ignore[arg-type]
                mode=mode,
            )
        )
    return files


def content_hash(template: TemplateWrite) -> str:
    """SHA-256 of a template's canonical JSON: equal for equal content, whatever the file times."""
    return hashlib.sha256(msgspec.json.encode(template, order="sorted")).hexdigest()


def parse_template_dir(path: Path) -> ParsedTemplate:
    """Read one template directory. Raises `TemplateFormatError` naming the offending file."""
    conf_path = path / CONF_NAME
    if not conf_path.is_file():
        raise TemplateFormatError(f"missing {CONF_NAME}")
    root = path
    base = template_from_conf(parse_conf(_read_text(conf_path, root)), path.name)
    configs = path / CONFIGS_DIR
    template = msgspec.structs.replace(
        base,
        scripts=parse_scripts(configs / "scripts", root),
        packages=parse_packages(configs / "packages", root),
        files=parse_files(configs / "files", root),
    )
    return ParsedTemplate(source_dir=path.name, template=template, content_hash=content_hash(template))


def template_dirs(root: Path) -> list[Path]:
    """Subdirectories of ``root`` that hold a ``template.conf``, in name order."""
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / CONF_NAME).is_file()),
        key=lambda p: p.name,
    )
