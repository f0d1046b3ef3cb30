"""The package map holds: imports point down (core <- export, training, gateway <- cli), and no cycles."""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.support import REPO

# what each area may import from ladder.* besides itself
ALLOWED = {
    "core": {"defaults"},
    "defaults": set(),
    "export": {"core", "defaults"},
    "training": {"core", "defaults"},
    "gateway": {"core", "defaults"},
    "bench": {"core", "defaults", "export", "gateway", "training"},
    "cli": {"core", "defaults", "export", "gateway", "training", "bench"},
}


def _imports() -> dict[str, set[str]]:
    """Module (dotted, under ladder) -> the ladder modules it imports, TYPE_CHECKING blocks included."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in (REPO / "ladder").rglob("*.py"):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            graph[module].update(n for n in names if n.startswith("ladder."))
    return graph


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_point_down() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        if _area(module) in ALLOWED
        for target in targets
        if _area(target) != _area(module) and _area(target) not in ALLOWED[_area(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_in_the_core() -> None:
    graph = _imports()
    core = {
        module: {t for t in targets if t.startswith("ladder.core.")}
        for module, targets in graph.items()
        if module.startswith("ladder.core.")
    }

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for nxt in core.get(stack.pop(), set()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    assert [m for m in core if m in reachable(m)] == []


def test_every_area_is_mapped() -> None:
    areas = {p.name for p in (REPO / "ladder").iterdir() if (p / "__init__.py").is_file()}
    assert areas == set(ALLOWED), "a new package under ladder/ needs its place in ALLOWED"
    for old in ("service", "training", "cli", "export", "bench"):  # one namespace: no second top-level package
        assert not (REPO / old / "__init__.py").exists(), old
