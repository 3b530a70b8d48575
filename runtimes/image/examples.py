"""The example images, made here from this host's Debian packages (no registry needed).

===================  ==========================================================  ===========
name                 layers (bottom first)                                       ready by
===================  ==========================================================  ===========
isobench/pyhttp      base (glibc, /etc, merged-/usr links) · python3 · the app   http 8000/
isobench/redis       base · redis-server                                         tcp 6379
isobench/workload    the workload tree of runtimes.rootfs (busybox, stress-ng)   (command)
===================  ==========================================================  ===========

``base`` is the glibc both programs load, so the two images share their bottom layer (the
store unpacks it once).  The python3 layer is Debian's python3.11 and its standard library
(less tests, IDLE, tkinter and the like) with every shared object its modules load; the redis
layer is Debian's redis-server with its libraries and a config file (no persistence, every
address of the instance's own network namespace).  Files are copied from the installed Debian
packages, so an image changes exactly when a package does.

``python -m runtimes.image.examples [NAME…]`` (what ``nox -s images`` runs) builds and imports
them; :func:`ensure` does the same for one, reusing what the store has when its inputs match.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runtimes.image.build import TAG, ImageSpec, LayerSpec, build, closure, inputs_key
from runtimes.image.model import Image, ImageError

INPUTS_LABEL = "org.isobench.inputs"
READY_LABEL = "org.isobench.ready"
PYTHON = "/usr/bin/python3.11"
STDLIB = "/usr/lib/python3.11"
#: parts of the standard library a server does not use (tests, GUIs, build files, installers)
STDLIB_SKIP = ("test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data", "unittest",
               "distutils", "venv", "config-3.11-x86_64-linux-gnu", "sitecustomize.py", "turtle.py")
REDIS = "/usr/bin/redis-server"
REDIS_CONF = b"""# isobench example image: a cache, not a database
bind 0.0.0.0 -::*
port 6379
protected-mode no
save ""
appendonly no
daemonize no
dir /data
logfile ""
"""
NOBODY = "65534:65534"


def _base(libs: list[str]) -> LayerSpec:
    root_links = tuple((f"/{d}", f"usr/{d}") for d in ("bin", "sbin", "lib", "lib64"))
    etc = (("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
           ("/etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644),
           ("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files\n", 0o644),
           ("/etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n", 0o644))
    dirs = (("/usr/bin", 0o755), ("/usr/sbin", 0o755), ("/usr/lib", 0o755), ("/usr/lib64", 0o755),
            ("/etc", 0o755), ("/proc", 0o755), ("/sys", 0o755), ("/dev", 0o755), ("/run", 0o755),
            ("/root", 0o700), ("/tmp", 0o1777), ("/var/tmp", 0o1777))
    return LayerSpec("base: glibc, /etc", files=tuple(libs), links=root_links, dirs=dirs, contents=etc)


def _dlopened_by_libc(libs: list[str]) -> list[str]:
    """What glibc loads with dlopen(), so ldd never lists it: libgcc_s, for the unwinding that
    pthread_exit/pthread_cancel do (python's threads at exit).  Without it in the image, a stopped
    app aborts with "libgcc_s.so.1 must be installed for pthread_exit to work"."""
    libc = next((Path(f) for f in libs if Path(f).name == "libc.so.6"), None)
    found = libc.with_name("libgcc_s.so.1") if libc is not None else None
    return [str(found)] if found is not None and found.exists() else []


def _apps() -> tuple[list[str], list[str], list[str]]:
    """(base libraries, python3's files, redis's files): what both load goes into base."""
    dynload = sorted(str(p) for p in Path(STDLIB, "lib-dynload").glob("*.so")
                     if not p.name.startswith(("_test", "xxlimited", "_xxtest", "_ctypes_test")))
    python = closure(PYTHON, *dynload)
    redis = closure(REDIS)
    base = sorted(set(python) & set(redis) | set(_dlopened_by_libc(python)))
    return base, [f for f in python if f not in base and not f.startswith(STDLIB)], \
        [f for f in redis if f not in base]


def spec(name: str) -> ImageSpec:
    """The recipe of example image ``name`` (``isobench/pyhttp``, ``isobench/redis``, ``isobench/workload``)."""
    if name == "isobench/workload":
        from runtimes import rootfs

        tree = rootfs.build()
        return ImageSpec(name, (LayerSpec("workload tree: busybox, stress-ng", trees=((str(tree), "/", (".complete",)),)),),
                         cmd=("/bin/sh",), labels=((READY_LABEL, "exit"),))
    if name not in ("isobench/pyhttp", "isobench/redis"):
        raise ImageError(f"no example image {name!r} (known: {', '.join(NAMES)})")
    missing = [p for p in (PYTHON, STDLIB, REDIS) if not Path(p).exists()]
    if missing:
        raise ImageError(f"{missing[0]} not found (isobench doctor --fix installs python3 and redis-server)")
    base_libs, python_files, redis_files = _apps()
    base = _base(base_libs)
    if name == "isobench/redis":
        layer = LayerSpec("redis-server", files=tuple(redis_files), dirs=(("/data", 0o755),),
                          contents=(("/etc/redis/redis.conf", REDIS_CONF, 0o644),))
        return ImageSpec(name, (base, layer), entrypoint=("/usr/bin/redis-server",), cmd=("/etc/redis/redis.conf",),
                         workdir="/data", exposed_ports=("6379/tcp",), labels=((READY_LABEL, "tcp 6379"),))
    python = LayerSpec("python3.11 and its standard library", files=tuple(python_files),
                       trees=((STDLIB, STDLIB, STDLIB_SKIP),), links=(("/usr/bin/python3", "python3.11"),))
    app = Path(__file__).with_name("apps") / "httpapp.py"
    app_layer = LayerSpec("the app", dirs=(("/app", 0o755),), contents=(("/app/server.py", app.read_bytes(), 0o644),))
    return ImageSpec(name, (base, python, app_layer), entrypoint=("/usr/bin/python3",), cmd=("/app/server.py",),
                     env=("PATH=/usr/local/bin:/usr/bin:/bin", "PORT=8000", "PYTHONUNBUFFERED=1",
                          "PYTHONDONTWRITEBYTECODE=1"),
                     workdir="/app", user=NOBODY, exposed_ports=("8000/tcp",), stop_signal="SIGTERM",
                     labels=((READY_LABEL, "http 8000/"),))


NAMES = ("isobench/pyhttp", "isobench/redis", "isobench/workload")


def ensure(name: str, store: object | None = None) -> Image:
    """Example image ``name`` from the store, built and imported first when the store has none
    made from the current inputs (the build is cached under the cache directory by its key)."""
    from runtimes.image.store import Store
    from runtimes.rootfs import cache_dir

    store = store if isinstance(store, Store) else Store()
    recipe = spec(name)
    key = inputs_key(recipe)
    ref = f"{name}:{TAG}"
    try:
        image = store.get(ref)
        if image.config.labels.get(INPUTS_LABEL) == key:
            return image
    except ImageError:
        pass
    recipe = ImageSpec(**{**recipe.__dict__, "labels": (*recipe.labels, (INPUTS_LABEL, key))})
    layout = cache_dir() / "examples" / f"{name.replace('/', '-')}-{key}"
    if not (layout / "index.json").is_file():
        build(recipe, layout)
    return store.import_(layout, name=ref, ref=TAG)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(NAMES)
    try:
        for name in names:
            image = ensure(name)
            print(f"{image.name}  {image.digest}  {len(image.layers)} layer(s)  {image.size / (1 << 20):.1f} MiB")
    except ImageError as e:
        print(f"isobench: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
