"""The census of vLLM's encoder CUDA graphs: every place in a vLLM release that implements
SupportsEncoderCudaGraph, read from its wheel or source tree without importing it.

A *place* is a class whose bases name SupportsEncoderCudaGraph directly. For each place the census
gives its file (relative to the vllm package) and class, the Hugging Face architectures vLLM's model
registry maps to it, every class that inherits from it (with their architectures and the capture
methods they override), the registered classes that dispatch to it in ``__new__`` (MiniCPM-V), and
where its MRO within vLLM defines each capture method (file:line).

    python tools/vllm_census.py /tmp/vllm/vllm-0.33.0-*.whl -o encgraph_profiler/models/vllm_census.json
    python tools/vllm_census.py /path/to/src --check encgraph_profiler/models/vllm_census.json

``--check FILE`` exits 1 when the census of the given source differs from FILE.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERFACE = "SupportsEncoderCudaGraph"
REGISTRY_FILE = "model_executor/models/registry.py"
DEFAULT_MODELS_PACKAGE = "vllm.model_executor.models"
# The capture methods the census locates; the last is optional (a place may not define it).
METHODS = (
    "get_encoder_cudagraph_budget_range",
    "get_encoder_cudagraph_item_specs",
    "prepare_encoder_cudagraph_capture_inputs",
)
OPTIONAL_METHODS = ("get_encoder_cudagraph_config",)
ALL_METHODS = METHODS + OPTIONAL_METHODS

ClassKey = tuple[str, str]  # (file relative to the vllm package, class name)


# -- reading the source ---------------------------------------------------------------------------
def read_wheel(path: Path) -> tuple[dict[str, str], str | None]:
    """The package's .py files (relative to vllm/) and the version the wheel's METADATA states."""
    files: dict[str, str] = {}
    version = None
    with zipfile.ZipFile(path) as wheel:
        for name in wheel.namelist():
            if name.startswith("vllm/") and name.endswith(".py"):
                files[name[len("vllm/") :]] = wheel.read(name).decode("utf-8", errors="replace")
            elif re.fullmatch(r"vllm-[^/]+\.dist-info/METADATA", name):
                found = re.search(r"^Version:\s*(\S+)", wheel.read(name).decode("utf-8"), re.MULTILINE)
                version = found.group(1) if found else None
    return files, version


def read_tree(path: Path) -> tuple[dict[str, str], str | None]:
    """The .py files of an unpacked vllm package: ``path`` is the package or the folder holding it."""
    root = path if (path / "__init__.py").is_file() and path.name == "vllm" else path / "vllm"
    if not (root / "__init__.py").is_file():
        raise SystemExit(f"{path}: neither a vllm package nor a folder holding one")
    files = {p.relative_to(root).as_posix(): p.read_text(errors="replace") for p in sorted(root.rglob("*.py"))}
    # vllm/_version.py: __version__ = version = '0.33.0'
    assignment = re.compile(r"""^(?:__version__|version)\b[^=\n]*=\s*(?:\w+\s*=\s*)?['"]([^'"]+)['"]""", re.MULTILINE)
    found = [m.group(1) for name in ("_version.py", "version.py") if (m := assignment.search(files.get(name, "")))]
    return files, found[0] if found else None


def read_source(path: Path) -> tuple[dict[str, str], str | None]:
    return read_wheel(path) if path.is_file() else read_tree(path)


# -- parsing --------------------------------------------------------------------------------------
@dataclass
class ClassInfo:
    name: str
    line: int
    bases: list[str]  # dotted names of the base expressions ("nn.Module", "SupportsEncoderCudaGraph")
    methods: dict[str, int]  # method name -> line
    new_names: set[str] = field(default_factory=set)  # names __new__ reads


@dataclass
class ModuleInfo:
    classes: dict[str, ClassInfo]
    imports: dict[str, list[tuple[str, str | None]]]  # local name -> [(module, attribute or None)]
    star_imports: list[str]
    lazy_imports: dict[str, list[tuple[str, str | None]]]  # imported in a module-level __getattr__
    assigned_names: dict[str, set[str]]  # module-level variable -> names its value reads


def dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    if isinstance(node, ast.Subscript):  # Generic[T], Protocol[...]
        return dotted(node.value)
    return None


def module_body(nodes: list[ast.stmt]):
    """Module-level statements, into if/else and try blocks (conditional imports and classes)."""
    for node in nodes:
        yield node
        if isinstance(node, ast.If):
            yield from module_body(node.body)
            yield from module_body(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from module_body(block)


class Tree:
    """The vllm package's files, parsed on demand."""

    def __init__(self, files: dict[str, str]):
        self.files = files
        self._modules: dict[str, ModuleInfo] = {}

    # file <-> module
    def file_of(self, module: str) -> str | None:
        if module != "vllm" and not module.startswith("vllm."):
            return None
        rel = module[len("vllm.") :].replace(".", "/") if module != "vllm" else ""
        for candidate in (f"{rel}.py", f"{rel}/__init__.py" if rel else "__init__.py"):
            if candidate in self.files:
                return candidate
        return None

    @staticmethod
    def package_of(file: str) -> str:
        parts = ["vllm", *file[: -len(".py")].split("/")]
        return ".".join(parts[:-1])  # a/__init__.py -> vllm.a ; a/b.py -> vllm.a

    def module(self, file: str) -> ModuleInfo:
        if file not in self._modules:
            self._modules[file] = self._parse(file)
        return self._modules[file]

    def _parse(self, file: str) -> ModuleInfo:
        tree = ast.parse(self.files[file], filename=file)
        classes: dict[str, ClassInfo] = {}
        imports: dict[str, list[tuple[str, str | None]]] = {}
        stars: list[str] = []
        assigned: dict[str, set[str]] = {}
        lazy: dict[str, list[tuple[str, str | None]]] = {}
        package = self.package_of(file)
        for node in module_body(tree.body):
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom):
                        for alias in inner.names:
                            lazy.setdefault(alias.asname or alias.name, []).append(
                                (self.absolute(package, inner), alias.name)
                            )
            if isinstance(node, ast.ClassDef) and node.name not in classes:
                methods = {
                    item.name: item.lineno
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
                info = ClassInfo(node.name, node.lineno, [d for b in node.bases if (d := dotted(b))], methods)
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__new__":
                        info.new_names = {n.id for n in ast.walk(item) if isinstance(n, ast.Name)}
                classes[node.name] = info
            elif isinstance(node, ast.ImportFrom):
                source = self.absolute(package, node)
                for alias in node.names:
                    if alias.name == "*":
                        stars.append(source)
                    else:
                        imports.setdefault(alias.asname or alias.name, []).append((source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        imports.setdefault(alias.asname, []).append((alias.name, None))
                    else:  # import a.b.c binds a
                        head = alias.name.split(".")[0]
                        imports.setdefault(head, []).append((head, None))
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
                for target in targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, set()).update(names)
        return ModuleInfo(classes, imports, stars, lazy, assigned)

    @staticmethod
    def absolute(package: str, node: ast.ImportFrom) -> str:
        """The module a ``from ... import`` reads, relative imports made absolute."""
        if not node.level:
            return node.module or ""
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    # name resolution
    def export(self, module: str, name: str, seen: frozenset[tuple[str, str]] = frozenset()) -> list[ClassKey]:
        """The classes ``module``'s attribute ``name`` may be (several where conditional imports differ)."""
        file = self.file_of(module)
        if file is None or (module, name) in seen:
            return []
        seen = seen | {(module, name)}
        info = self.module(file)
        if name in info.classes:
            return [(file, name)]
        found: list[ClassKey] = []
        for source, attribute in info.imports.get(name, []):
            found += self.export(source, attribute, seen) if attribute else []
        for source in info.star_imports if not found else []:
            found += self.export(source, name, seen)
        for source, attribute in info.lazy_imports.get(name, []):
            found += self.export(source, attribute, seen) if attribute else []
        return sorted(set(found))

    def resolve(self, file: str, name: str) -> list[ClassKey]:
        """The classes a dotted name used in ``file`` refers to."""
        info = self.module(file)
        head, _, rest = name.partition(".")
        if not rest:
            if head in info.classes:
                return [(file, head)]
            found = [k for s, a in info.imports.get(head, []) if a for k in self.export(s, a)]
            for source in info.star_imports if not found else []:
                found += self.export(source, head)
            return sorted(set(found))
        *path, last = rest.split(".")
        found = []
        for source, attribute in info.imports.get(head, []):
            module = ".".join([source, *([attribute] if attribute else []), *path])
            found += self.export(module, last)
        return sorted(set(found))


# -- the census -----------------------------------------------------------------------------------
def c3(key: ClassKey, parents: dict[ClassKey, list[ClassKey]], memo: dict[ClassKey, list[ClassKey]]) -> list[ClassKey]:
    """The class's MRO over the classes vLLM defines (C3; depth-first where C3 has no answer)."""
    if key in memo:
        return memo[key]
    memo[key] = [key]  # guards against cycles
    sequences = [list(c3(p, parents, memo)) for p in parents[key]] + [list(parents[key])]
    result = [key]
    while any(sequences):
        for sequence in sequences:
            if sequence and not any(sequence[0] in s[1:] for s in sequences):
                head = sequence[0]
                break
        else:  # inconsistent: fall back to depth-first order
            rest = [k for s in sequences for k in s]
            result += [k for i, k in enumerate(rest) if k not in result and k not in rest[:i]]
            break
        result.append(head)
        sequences = [s[1:] if s and s[0] == head else s for s in sequences]
    memo[key] = result
    return result


class Census:
    def __init__(self, files: dict[str, str]):
        self.tree = Tree(files)
        self.parents: dict[ClassKey, list[ClassKey]] = {}
        self.by_name: dict[str, set[ClassKey]] = {}  # the classes parsed so far, by name

    def info(self, key: ClassKey) -> ClassInfo:
        return self.tree.module(key[0]).classes[key[1]]

    def bases(self, key: ClassKey) -> list[ClassKey]:
        """The base classes vLLM defines, in order (the first where a name may be several)."""
        if key not in self.parents:
            parents = []
            for base in self.info(key).bases:
                resolved = self.tree.resolve(key[0], base)
                if not resolved:  # not by the imports: by name, where one parsed class has it
                    same = self.by_name.get(base.split(".")[-1], set())
                    resolved = sorted(same) if len(same) == 1 else []
                if resolved:
                    parents.append(resolved[0])
            self.parents[key] = parents
        return self.parents[key]

    def files_naming(self, names: set[str]) -> list[str]:
        """The files that mention one of ``names`` as a word."""
        if not names:
            return []
        pattern = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, names))) + r")\b")
        return sorted(
            file
            for file, text in self.tree.files.items()
            if any(name in text for name in names) and pattern.search(text)
        )

    def classes_in(self, files: list[str]) -> list[ClassKey]:
        keys = []
        for file in files:
            try:
                keys += [(file, name) for name in self.tree.module(file).classes]
            except SyntaxError:
                print(f"warning: cannot parse {file}", file=sys.stderr)
        for key in keys:
            self.by_name.setdefault(key[1], set()).add(key)
        return keys

    def run(self) -> dict[str, Any]:
        candidates = self.classes_in(self.files_naming({INTERFACE}))
        interfaces = [k for k in candidates if k[1] == INTERFACE]
        if not interfaces:
            raise SystemExit(f"no class {INTERFACE} in this source")
        interface = interfaces[0]
        places = sorted(
            key
            for key in candidates
            if key != interface
            and any(
                interface in self.tree.resolve(key[0], base) or base.split(".")[-1] == INTERFACE
                for base in self.info(key).bases
            )
        )
        # Every class that inherits from a place, found by following the names through the files.
        known: set[ClassKey] = set(places)
        frontier = {k[1] for k in places}
        while frontier:
            named = self.classes_in(self.files_naming(frontier))
            frontier = set()
            for key in named:
                if key not in known and any(p in known for p in self.bases(key)):
                    known.add(key)
                    frontier.add(key[1])
        architectures = self.architectures()
        dispatchers = self.dispatchers(known, architectures)
        entries = []
        for place in places:
            below = {k for k in known if k != place and place in self.parents_all(k)}
            located = self.locate(place, interface)
            entries.append(
                {
                    "file": place[0],
                    "class": place[1],
                    "line": self.info(place).line,
                    "architectures": sorted(architectures.get(place, ())),
                    "methods": located,
                    "inheritors": [
                        {
                            "file": key[0],
                            "class": key[1],
                            "line": self.info(key).line,
                            "architectures": sorted(architectures.get(key, ())),
                            "overrides": {
                                m: loc
                                for m, loc in self.locate(key, interface).items()
                                if m in ALL_METHODS and loc != located.get(m)
                            },
                        }
                        for key in sorted(below)
                    ],
                    "dispatchers": [
                        {"file": key[0], "class": key[1], "architectures": archs, "to": sorted(k[1] for k in to)}
                        for key, (archs, to) in sorted(dispatchers.items())
                        if to & (below | {place})
                    ],
                }
            )
        return {"interface": {"file": interface[0], "class": interface[1]}, "entries": entries}

    def locate(self, key: ClassKey, interface: ClassKey) -> dict[str, str | None]:
        """Where the class's MRO within vLLM defines each capture method (the interface's stubs excluded)."""
        mro = [k for k in c3(key, self.parents_all(key), {}) if k != interface]
        found: dict[str, str | None] = {m: None for m in METHODS}
        for method in ALL_METHODS:
            for klass in mro:
                line = self.info(klass).methods.get(method)
                if line is not None:
                    found[method] = f"{klass[0]}:{line}"
                    break
        return found

    def parents_all(self, key: ClassKey) -> dict[ClassKey, list[ClassKey]]:
        parents: dict[ClassKey, list[ClassKey]] = {}
        stack = [key]
        while stack:
            k = stack.pop()
            if k not in parents:
                parents[k] = self.bases(k)
                stack += parents[k]
        return parents

    def registry(self) -> list[tuple[str, str, str]]:
        """(architecture, module, class) of every dict literal in vLLM's model registry."""
        if REGISTRY_FILE not in self.tree.files:
            raise SystemExit(f"no {REGISTRY_FILE} in this source")
        rows = []
        for node in module_body(ast.parse(self.tree.files[REGISTRY_FILE]).body):
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if not isinstance(value, ast.Dict):
                continue
            for key, item in zip(value.keys, value.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and isinstance(key.value, str)
                    and isinstance(item, ast.Tuple)
                    and len(item.elts) == 2
                    and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in item.elts)
                ):
                    module, cls = (e.value for e in item.elts)  # type: ignore[attr-defined]
                    module = module if module.startswith("vllm.") else f"{DEFAULT_MODELS_PACKAGE}.{module}"
                    rows.append((key.value, module, cls))
        return rows

    def architectures(self) -> dict[ClassKey, set[str]]:
        found: dict[ClassKey, set[str]] = {}
        for architecture, module, cls in self.registry():
            for key in self.tree.export(module, cls):
                found.setdefault(key, set()).add(architecture)
        return found

    def dispatchers(
        self, known: set[ClassKey], architectures: dict[ClassKey, set[str]]
    ) -> dict[ClassKey, tuple[list[str], set[ClassKey]]]:
        """Registered classes outside ``known`` whose ``__new__`` picks one of ``known`` (directly or
        through a module-level table), with their architectures and the classes they pick."""
        naming = set(self.files_naming({k[1] for k in known}))
        found = {}
        for key, archs in architectures.items():
            if key in known or key[0] not in naming:
                continue
            module = self.tree.module(key[0])
            read = set(module.classes[key[1]].new_names)
            for name in list(read):
                read |= module.assigned_names.get(name, set())
            to = {(key[0], n) for n in read if (key[0], n) in known}
            if to:
                found[key] = (sorted(archs), to)
        return found


def census(path: Path, version: str | None = None) -> dict[str, Any]:
    files, found_version = read_source(path)
    result = Census(files).run()
    return {"vllm_version": version or found_version or "unknown", **result}


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a vLLM wheel (.whl) or an unpacked source tree")
    parser.add_argument("-o", "--output", type=Path, help="write the census here (default: stdout)")
    parser.add_argument("--check", type=Path, help="exit 1 when the census differs from this file")
    parser.add_argument("--version", help="the vLLM version, where the source does not state it")
    args = parser.parse_args(argv)
    text = dump(census(args.source, args.version))
    if args.check:
        old = args.check.read_text() if args.check.is_file() else ""
        if old != text:
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), str(args.check), "census", lineterm="")
            print(f"{args.check} differs from the census of {args.source}:", file=sys.stderr)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
            return 1
        return 0
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
