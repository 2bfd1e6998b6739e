"""A container's spec from a template revision and the choices made at creation: what creation provisions and what a
sync brings an existing container to.

The choices (`SpecChoices`, stored in the spec) are what the creation request said beyond the template: which package
managers, extra apt packages, which scripts in which order (and which were left out), and which resource values were
given explicitly. Applied to another revision they give the same container as if it had been created from that
revision: an explicit value stays, a value taken from the template follows the template, a script that is new in the
template runs when the template enables it, a script the user left out stays out.
"""

from typing import Any

import msgspec

from infrahaus_domain.containers.schemas import ContainerSpec, SpecChoices, SpecFile, SpecPackage, SpecScript
from infrahaus_domain.templates.schemas import TemplateContent

# Resource values a sync may change on an existing container; the others (disk, storage, privileges, OS image) are
# fixed at creation.
SYNCED_FIELDS = ("cores", "memory_mb", "swap_mb", "bridge", "nesting", "keyctl", "fuse")


def legacy_choices(spec: ContainerSpec) -> SpecChoices:
    """Choices for a container created before they were recorded: every resource value counts as explicit (a sync
    leaves the Proxmox config alone), the scripts it ran stay chosen, every package manager is wanted."""
    return SpecChoices(
        package_managers=None,
        extra_packages=[],
        scripts=[s.name for s in spec.scripts],
        skipped_scripts=[],
        overrides={name: getattr(spec, name) for name in SYNCED_FIELDS},
    )


def choices_of(spec: ContainerSpec) -> SpecChoices:
    return spec.choices if spec.choices is not None else legacy_choices(spec)


def choose_scripts(content: TemplateContent, choices: SpecChoices) -> list[SpecScript]:
    """The scripts to run, in order: the chosen ones the revision still has, then enabled scripts the user never
    saw (new in the revision); `None` choices mean the revision's enabled scripts."""
    ordered = sorted(content.scripts, key=lambda s: s.position)
    if choices.scripts is None:
        picked = [s for s in ordered if s.enabled]
    else:
        by_name = {s.name: s for s in ordered}
        known = set(choices.scripts) | set(choices.skipped_scripts)
        picked = [by_name[name] for name in choices.scripts if name in by_name]
        picked += [s for s in ordered if s.enabled and s.name not in known]
    return [SpecScript(id=s.id, name=s.name, content=s.content) for s in picked]


def template_files(content: TemplateContent) -> list[SpecFile]:
    return [
        SpecFile(name=f.name, target_path=f.target_path, policy=f.policy, mode=f.mode, content=f.content)
        for f in content.files
    ]


def template_packages(content: TemplateContent, choices: SpecChoices) -> list[SpecPackage]:
    """The revision's packages of the chosen managers, then the extra apt packages (already validated)."""
    managers = set(choices.package_managers) if choices.package_managers is not None else None
    packages = [
        SpecPackage(name=p.name, manager=p.manager, version=p.version)
        for p in content.packages
        if managers is None or p.manager in managers
    ]
    for extra in choices.extra_packages:
        name, _, version = extra.partition("=")
        if not any(p.manager == "apt" and p.name == name for p in packages):
            packages.append(SpecPackage(name=name, manager="apt", version=version or None))
    return packages


def spec_for_revision(base: ContainerSpec, content: TemplateContent, revision: int) -> ContainerSpec:
    """`base` (the container's applied spec) brought to a revision's content under the same choices."""
    choices = choices_of(base)
    values: dict[str, Any] = {name: choices.overrides.get(name, getattr(content, name)) for name in SYNCED_FIELDS}
    return msgspec.structs.replace(
        base,
        **values,
        template_revision=revision,
        choices=choices,
        scripts=choose_scripts(content, choices),
        files=template_files(content),
        packages=template_packages(content, choices),
    )
