"""Generates the Python code for every proto under protos/ into the top-level marketing/ package."""

from __future__ import annotations

import argparse
import filecmp
import pathlib
import shutil
import sys
import tempfile

import grpc_tools
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT_PACKAGE = "marketing"


def include_paths() -> list[str]:
    """The proto root, the well-known types shipped with grpc_tools, and googleapis protos."""
    import google.rpc  # shipped by googleapis-common-protos, with its .proto files

    googleapis = pathlib.Path(google.rpc.__path__[0]).parent.parent
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: pathlib.Path) -> None:
    files = proto_files()
    args = ["protoc", *(f"-I{p}" for p in include_paths())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main(args + files) != 0:
        raise SystemExit("protoc failed")
    # Every generated folder becomes a regular package so that tools and packaging see it.
    for folder in [out_dir / OUT_PACKAGE, *(out_dir / OUT_PACKAGE).rglob("*")]:
        if folder.is_dir():
            (folder / "__init__.py").touch()


def tree_files(root: pathlib.Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if marketing/ is stale")
    parser.add_argument("--image", help="write a descriptor-set image (for buf lint) and stop")
    ns = parser.parse_args()
    if ns.image:
        pathlib.Path(ns.image).parent.mkdir(parents=True, exist_ok=True)
        args = ["protoc", *(f"-I{p}" for p in include_paths()), "--include_imports"]
        args += ["--include_source_info", f"-o{ns.image}", *proto_files()]
        return protoc.main(args)
    target = ROOT / OUT_PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp)
        generate(out)
        fresh = out / OUT_PACKAGE
        if ns.check:
            want, have = tree_files(fresh), tree_files(target) if target.exists() else set()
            stale = sorted(want ^ have)
            stale += sorted(f for f in want & have if not filecmp.cmp(fresh / f, target / f, False))
            if stale:
                print("generated code is stale; run `make protos`:", *stale, sep="\n  ")
                return 1
            print(f"generated code is fresh ({len(want)} files)")
            return 0
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(fresh, target)
        print(f"generated {len(tree_files(target))} files into {OUT_PACKAGE}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
