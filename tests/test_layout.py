"""The package's structure, as the README's "How it fits together" states it: layers import downward only,
no imports inside functions, the checkpoint bundle imports only torch, transformers, numpy (and the
audio decoders) and its siblings, and every module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gmp_tl_hf"
# lower layers first; a module may import its own layer and the ones before it
LAYERS = [
    {"models"},
    {"data"},
    {"gmp"},
    {
        "arguments",
        "presets",
        "processes",
        "records",
        "fold_data",
        "model_setup",
        "trainer",
        "hub",
        "plotting",
        "baseline",
    },
    {"pretraining"},
    {"recipes", "onnx_export", "predict"},
    {"cross_validation", "app"},
    {"demo"},
    {"cli"},
]
BUNDLE_IMPORTS = {"torch", "transformers", "numpy", "soundfile", "soxr", "onnxruntime"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts).removesuffix(".__init__")] = path
    return found


def relative_targets(name: str, path: Path) -> list[str]:
    """The package modules ``name`` imports relatively (resolved to full dotted names)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            targets.append(".".join(base + ([node.module] if node.module else [])))
    return targets


def layer_of(name: str) -> int:
    top = name.split(".")[1] if "." in name else ""
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    return -1  # the package's __init__: exports from the bundle


def test_layers_import_downward_only():
    unplaced = [name for name in modules() if name != "gmp_tl_hf" and layer_of(name) < 0]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"
    upward = []
    for name, path in modules().items():
        for target in relative_targets(name, path):
            if target != "gmp_tl_hf" and layer_of(target) > layer_of(name) >= 0:
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_no_imports_inside_functions():
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            found += [
                f"{name}.{function.name}" for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))
            ]
    assert not found, found


def test_checkpoint_bundle_imports_only_torch_transformers_numpy_and_siblings():
    stdlib = set(sys.stdlib_module_names)
    for path in (PACKAGE / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name} reaches outside models/: {ast.unparse(node)}"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for top in (n.split(".")[0] for n in names):
                    assert top in BUNDLE_IMPORTS | stdlib, f"{path.name} imports {top}"
        assert "ContextVar" not in path.read_text(), f"{path.name}: lengths are passed explicitly, no ContextVar"
    assert "pipeline" not in " ".join(
        relative_targets("gmp_tl_hf.models.modeling_hubert_gmp", path.parent / "modeling_hubert_gmp.py")
    )


def test_every_module_imports_on_its_own():
    """Each module in a clean interpreter state of the package (third-party modules stay cached)."""
    names = sorted(modules())
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'gmp_tl_hf' or m.startswith('gmp_tl_hf.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
