"""The package's layers: lower layers never import higher ones, and no module imports itself back.

core (verdicts, the claim kit, errors, inputs, devices) < engines (runs and numerics: they return
records) and generate (networks, data, seeded cases) < claims < harness (audit, battery, plugin, CLI)
and report. Imports inside functions count too.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "theorycheck"
LAYERS = ("core", "engines", "generate", "theory", "claims", "report", "harness")  # the folders
MAY_IMPORT = {
    "core": {"core"},
    "engines": {"core", "engines"},
    "generate": {"core", "generate"},
    "theory": {"core"},
    "claims": {"core", "engines", "generate", "theory", "claims"},
    "report": {"core", "report"},
    "harness": {"core", "engines", "generate", "theory", "claims", "report", "harness"},
}


def layer_of(module: str) -> str:
    """The layer of ``module`` is its folder: ``engines.dynamics`` -> ``engines``."""
    top = module.split(".")[0]
    return top if top in LAYERS else "unassigned"


def imports_of(path: pathlib.Path, source: str | None = None) -> set[str]:
    """theorycheck modules imported by ``path`` (relative to the package, e.g. ``claims.homogeneity``)."""
    package = list(path.relative_to(PACKAGE).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] + ([node.module] if node.module else [])
            elif (node.module or "").startswith("theorycheck"):
                base = node.module.split(".")[1:]
            else:
                continue
            if len(base) <= 1 and set(base) <= set(LAYERS):  # `from . import x` / `from .claims import x`
                found |= {".".join(base + [alias.name]) for alias in node.names}
            else:
                found.add(".".join(base))
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".", 1)[1] for alias in node.names if alias.name.startswith("theorycheck.")}
    return {name for name in found if name}


MODULES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__"): p
           for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__init__.py" or p.parent != PACKAGE}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_its_own_and_lower_layers(module):
    layer = layer_of(module)
    assert layer != "unassigned", f"theorycheck.{module} belongs to no layer: move it into one of the folders {LAYERS}"
    wrong = sorted(target for target in imports_of(MODULES[module])
                   if layer_of(target) not in MAY_IMPORT[layer])
    assert not wrong, f"theorycheck.{module} ({layer}) imports {wrong}, a higher layer"


def test_no_import_cycles():
    graph = {m: {t for t in imports_of(p) if t in MODULES} for m, p in MODULES.items()}
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_reader_sees_relative_absolute_and_function_level_imports():
    source = ("from ..claims.kkt import check_kkt\nfrom ..harness import audit\nimport theorycheck.harness.plugin\n"
              "def f():\n    from .homogeneity import x\n")
    assert imports_of(PACKAGE / "claims" / "margin.py", source) == {"claims.kkt", "harness.audit", "harness.plugin",
                                                                   "claims.homogeneity"}
    assert layer_of("claims.kkt") == "claims" and "harness" not in MAY_IMPORT["claims"]
    assert layer_of("audit") == "unassigned"  # a module outside the layer folders


VERDICT_MAKERS = {"Verdict", "_decide"}  # constructing a Verdict, or deciding one below the kit


def verdict_makers(source: str) -> list[str]:
    """Calls in ``source`` that build a Verdict other than through a kit's ``decide``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            owner = getattr(node.func, "value", None)
            if name in VERDICT_MAKERS or (name in ("decide", "from_dict") and getattr(owner, "id", "") == "Verdict"):
                found.append(f"line {node.lineno}: {ast.unparse(node.func)}(...)")
        elif isinstance(node, ast.ImportFrom) and any(alias.name == "_decide" for alias in node.names):
            found.append(f"line {node.lineno}: imports _decide")
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer_of(m) in ("claims", "engines", "generate",
                                                                               "theory", "harness")))
def test_verdicts_are_decided_only_by_the_kit(module):
    """One road to a verdict: no module above core builds one except through ``kit.decide``."""
    assert not verdict_makers(MODULES[module].read_text()), (
        f"theorycheck.{module} builds a Verdict around the kit: {verdict_makers(MODULES[module].read_text())}")


def test_the_verdict_scan_sees_constructors_deciders_and_the_private_decider():
    source = ("from ..core.verdict import _decide\nv = Verdict(claim='x')\nw = Verdict.decide(claim='x')\n"
              "u = kit.decide(assumptions={})\n")
    assert [line.split(":")[0] for line in verdict_makers(source)] == ["line 1", "line 2", "line 3"]
