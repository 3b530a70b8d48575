"""``isobench image import|ls|inspect|rm``: the image store, from the command line."""

from __future__ import annotations

import argparse
import json

from harness.errors import UserError

HELP = "import OCI / docker-archive images into the store; list, inspect and remove them"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="image_command", required=True, metavar="SUBCOMMAND")
    imp = sub.add_parser("import", help="import an OCI image layout (directory or tar) or a docker-archive tar")
    imp.add_argument("source", metavar="SOURCE", help="what skopeo copy … oci:DIR / oci-archive:F, "
                     "podman save or docker save wrote")
    imp.add_argument("--name", help="store it as NAME[:TAG] (default: the name the source carries)")
    imp.add_argument("--ref", help="which image of a source that holds several (its name or tag there)")
    imp.add_argument("--max-layer-mib", type=int, metavar="MIB",
                     help="refuse a layer that unpacks to more than this (default 8192, "
                          "or $ISOBENCH_IMAGE_MAX_LAYER_MIB)")
    sub.add_parser("ls", help="list the stored images: name, digest, size, layers, created")
    ins = sub.add_parser("inspect", help="one image as JSON: layers, config, origin")
    ins.add_argument("ref", metavar="NAME", help="NAME[:TAG] or a digest prefix")
    rm = sub.add_parser("rm", help="remove a name (the image goes with its last name; layers when unused)")
    rm.add_argument("refs", nargs="+", metavar="NAME", help="NAME[:TAG] or a digest prefix")


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def main(args: argparse.Namespace) -> int:
    from runtimes.image.model import ImageError

    try:
        return _ACTIONS[args.image_command](args)
    except ImageError as e:
        raise UserError(str(e)) from None


def _import(args: argparse.Namespace) -> int:
    from runtimes.image.store import Store
    from runtimes.image.streams import Caps

    store = Store(caps=Caps.from_env(args.max_layer_mib))
    image = store.import_(args.source, name=args.name, ref=args.ref)
    record = store.record(image)
    print(f"imported {image.name} ({image.digest}, {len(image.layers)} layer(s), {_size(image.size)})")
    if record.get("skipped_devices"):
        print(f"  skipped {record['skipped_devices']} device node(s): the backends make /dev themselves")
    if record.get("dropped_xattrs"):
        print(f"  dropped {record['dropped_xattrs']} extended attribute(s) other than user.* and security.capability")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from runtimes.image.names import short
    from runtimes.image.store import Store

    store = Store()
    rows = [("NAME", "DIGEST", "SIZE", "LAYERS", "CREATED")]
    for image in store.list():
        created = store.record(image).get("created") or "-"
        name = "<none>" if image.name == image.digest else image.name
        rows.append((name, short(image.digest), _size(image.size), str(len(image.layers)), created[:19]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from runtimes.image.store import Store

    store = Store()
    image = store.get(args.ref)
    record = store.record(image)
    c = image.config
    doc = {
        "name": image.name, "names": record.get("names", []), "digest": image.digest,
        "config_digest": image.config_digest, "size": image.size, "architecture": image.architecture,
        "os": image.os, "created": record.get("created"), "imported": record.get("imported"),
        "source": record.get("source"), "format": record.get("format"),
        "layers": [{"diff_id": d, "blob": b, "path": str(p)}
                   for d, b, p in zip(image.diff_ids, record.get("blobs", []), image.layers, strict=False)],
        "config": {"entrypoint": list(c.entrypoint), "cmd": list(c.cmd), "env": dict(c.env),
                   "workdir": c.workdir, "user": c.user, "stop_signal": c.stop_signal,
                   "exposed_ports": list(c.exposed_ports), "labels": dict(c.labels)},
        "skipped_devices": record.get("skipped_devices", 0), "dropped_xattrs": record.get("dropped_xattrs", 0),
    }
    print(json.dumps(doc, indent=2))
    return 0


def _rm(args: argparse.Namespace) -> int:
    from runtimes.image.store import Store

    store = Store()
    for ref in args.refs:
        for line in store.remove(ref):
            print(f"removed {line}")
    return 0


_ACTIONS = {"import": _import, "ls": _ls, "inspect": _inspect, "rm": _rm}
