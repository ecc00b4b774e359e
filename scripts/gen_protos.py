"""Regenerate the Python stubs of the hive.v1 contract.

One command, no network: ``python scripts/gen_protos.py`` writes
``hive/v1/*_pb2.py``, ``*_pb2.pyi``, ``*_pb2_grpc.py`` and ``*_pb2_grpc.pyi``
from ``protos/hive/v1/*.proto``. ``--out DIR`` writes them under another root
instead, which is how the staleness test compares them with what is committed.
The grpcio-tools and mypy-protobuf versions are pinned in pyproject.toml so the
output is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out_root: Path) -> list[Path]:
    """Generate stubs for every proto under protos/ into out_root; return the files."""
    protos = sorted(PROTOS.rglob("*.proto"))
    out_root.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy_grpc={Path(sys.executable).parent / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_root}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    generated = []
    for proto in protos:
        package_dir = out_root / proto.parent.relative_to(PROTOS)
        relative = package_dir.relative_to(out_root)
        for part in [relative, *relative.parents][:-1]:
            init = out_root / part / "__init__.py"
            if not init.exists():
                init.write_text("")
        stem = proto.stem
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            generated.append(package_dir / f"{stem}{suffix}")
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write hive/v1/ under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
