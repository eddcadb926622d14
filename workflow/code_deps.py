"""The repository files a `lapcvae` command runs, found by reading imports (`ast`), so that a job reruns when code
it imports changes and for nothing else.

A command is a `*_main` function of workflow/commands/ (workflow/cli.py's COMMANDS). Its files are workflow/cli.py,
the command module, and every repository module imported, transitively, by:
  - the command module's top level, its entry function and the module's functions that one calls (a command module
    holds several commands and imports the library modules only each one uses inside it);
  - every library module reached, whole: its top level and the bodies of all its functions (an import inside a
    function is an import of the module);
  - a string literal that names a repository module (`doc_summary("eval.figures")`, `import_module("...")`);
  - the modules named by `core/registry.py`'s `model_class` of the models a job loads, and `core/datasets.py`'s
    writer of the data set it writes (imported by name at run time: `registry.load_class`, `datasets.writer`).
Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too, so those count. A non-Python file beside a module
whose name the module spells (eval/study_page.html, the human study's page template) counts with it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI_MODULE = "workflow.cli"
COMMANDS_PACKAGE = "workflow.commands"


def module_path(module: str, root: Path = REPO_ROOT) -> Path | None:
    """The file of a repository module (`a.b` -> a/b.py or a/b/__init__.py), None for any other module."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _parents(module: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: the packages an import runs before the module itself."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def _tree(path: Path) -> ast.Module:
    stat = path.stat()
    return _parse(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parse(path: Path, mtime_ns: int, size: int) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def _all_nodes(path: Path, mtime_ns: int, size: int) -> tuple[ast.AST, ...]:
    """Every node of a module, walked once for both its imports and its strings."""
    return tuple(ast.walk(_parse(path, mtime_ns, size)))


def _module_imports(path: Path, module: str) -> frozenset[str]:
    """What `_imported_names` finds in the whole of `module` (its file `path`), read once per version of the file:
    a DAG build asks for each module once per job it fingerprints."""
    stat = path.stat()
    return _whole_module_imports(path, module, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _whole_module_imports(path: Path, module: str, mtime_ns: int, size: int) -> frozenset[str]:
    return frozenset(_imported_names(_all_nodes(path, mtime_ns, size), module, path.name == "__init__.py"))


def _module_strings(path: Path) -> frozenset[str]:
    """The string literals of a module, read once per version of its file."""
    stat = path.stat()
    return _strings(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _strings(path: Path, mtime_ns: int, size: int) -> frozenset[str]:
    return frozenset(node.value for node in _all_nodes(path, mtime_ns, size)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str))


def _imported_names(nodes: Iterable[ast.AST], module: str, is_package: bool) -> set[str]:
    """Dotted names the import statements, and module-naming string literals, among `nodes` may import."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import submodule`
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value
              and all(part.isidentifier() for part in node.value.split("."))):
            names.add(node.value)  # a module named by a string, e.g. doc_summary("eval.figures")
    return names


def _walk_outside_functions(node: ast.AST) -> Iterable[ast.AST]:
    """Every node of `node` except those inside function bodies (what runs when a module is imported)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from (*child.decorator_list, *ast.walk(child.args))
            if child.returns is not None:
                yield from ast.walk(child.returns)
            continue
        yield child
        yield from _walk_outside_functions(child)


def _entry_nodes(tree: ast.Module, function: str) -> list[ast.AST]:
    """The nodes a command runs in its own module: the top level, `function` and the module functions it calls."""
    functions = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    if function not in functions:
        raise ValueError(f"no function {function!r} at the top level of its command module: fix workflow/cli.py")
    nodes = list(_walk_outside_functions(tree))
    todo, seen = [function], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        body = list(ast.walk(functions[name]))
        nodes += body
        todo += [node.id for node in body if isinstance(node, ast.Name) and node.id in functions]
    return nodes


def _repository_modules(names: Iterable[str], root: Path, known: dict[str, bool] | None = None) -> set[str]:
    """The repository modules among `names` and their parent packages; `known` remembers, for one traversal, which
    names are repository modules (the same third-party names come up in most modules)."""
    known = {} if known is None else known
    found: set[str] = set()
    for name in names:
        for parent in _parents(name):
            if parent not in known:
                known[parent] = module_path(parent, root) is not None
            if known[parent]:
                found.add(parent)
    return found


def _data_files(path: Path) -> set[Path]:
    """Non-Python files beside a module whose names the module spells as a string."""
    strings = _module_strings(path)
    return {sibling for sibling in path.parent.iterdir()
            if sibling.is_file() and sibling.suffix not in (".py", ".pyc") and sibling.name in strings}


def module_closure(modules: Iterable[str], root: Path = REPO_ROOT) -> set[Path]:
    """The files of `modules` and of every repository module they import, transitively, whole modules."""
    known: dict[str, bool] = {}
    todo = sorted(_repository_modules(modules, root, known))
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = module_path(module, root)
        assert path is not None
        names = _module_imports(path, module)
        todo += sorted(_repository_modules(names, root, known) - seen)
    files = {module_path(module, root) for module in seen}
    return {path for path in files if path is not None} | {data for path in list(files) if path is not None
                                                             for data in _data_files(path)}


def command_entry(command: str) -> tuple[str, str]:
    """(module, function) that `lapcvae <command>` runs (workflow/cli.py's COMMANDS)."""
    from workflow.cli import COMMANDS

    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}: workflow/cli.py's COMMANDS has {', '.join(COMMANDS)}")
    module, function = COMMANDS[command][0].split(":")
    return f"{COMMANDS_PACKAGE}.{module}", function


@functools.cache
def command_files(command: str, root: Path = REPO_ROOT) -> frozenset[Path]:
    """Every repository file `lapcvae <command>` runs, models loaded by name aside (see `code_files`)."""
    module, function = command_entry(command)
    path = module_path(module, root)
    if path is None:
        raise ValueError(f"{module} (workflow/cli.py, command {command!r}) is no module under {root}")
    names = _imported_names(_entry_nodes(_tree(path), function), module, False)
    return frozenset({path} | module_closure([CLI_MODULE, COMMANDS_PACKAGE, *names], root))


@functools.cache
def code_files(command: str, named: tuple[str, ...] = (), root: Path = REPO_ROOT) -> frozenset[Path]:
    """Every repository file `lapcvae <command>` runs when it loads the modules `named` (registry model classes,
    data-set writers: "module:attribute" or "module")."""
    modules = [name.partition(":")[0] for name in named]
    return command_files(command, root) | frozenset(module_closure(modules, root))
