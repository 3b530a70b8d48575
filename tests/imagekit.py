"""Hand-made images for the tests: two layers in overlayfs form, made from the host's busybox.

Until (and besides) the image store, a test builds its ``Image`` directly: a bottom layer with
a static busybox, /etc/passwd and /etc/group (a user ``app`` 1000:1000, also in group ``extra``
2000), a web root and two entries the top layer hides; a top layer with a whiteout of
``/junk/gone.txt`` (a 0/0 character device), an opaque ``/opq`` (``trusted.overlay.opaque=y``)
and an app script.  The image has no /proc, /dev, /sys or /tmp: the runtimes make them in the
instance's own upper.  Its default command serves /www over HTTP on ``PORT``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

from runtimes.image.model import Image, ImageConfig

PORT = 8080
BUSYBOX = "/bin/busybox"
#: serves /www on PORT with busybox's httpd, in the foreground
SERVE = ("/bin/busybox", "httpd", "-f", "-p", str(PORT), "-h", "/www")


def _file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.write_text(text)
    path.chmod(mode)


def _layers(base: Path) -> tuple[Path, Path]:
    bottom, top = base / "layer0", base / "layer1"
    for d in (bottom, top):
        d.mkdir(parents=True, mode=0o755)
    (bottom / "bin").mkdir(mode=0o755)
    shutil.copy2(BUSYBOX, bottom / "bin" / "busybox")
    (bottom / "bin" / "sh").symlink_to("busybox")
    _file(bottom / "etc" / "passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    _file(bottom / "etc" / "group", "root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    _file(bottom / "www" / "index.html", "hello from the bottom layer\n")
    _file(bottom / "junk" / "gone.txt", "whited out above\n")
    _file(bottom / "opq" / "old.txt", "hidden by an opaque directory above\n")
    (bottom / "home" / "app").mkdir(parents=True, mode=0o755)
    os.chown(bottom / "home" / "app", 1000, 1000)
    (top / "junk").mkdir(mode=0o755)
    os.mknod(top / "junk" / "gone.txt", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (top / "opq").mkdir(mode=0o755)
    os.setxattr(top / "opq", "trusted.overlay.opaque", b"y")
    _file(top / "opq" / "new.txt", "the opaque directory's own file\n")
    _file(top / "app" / "run.sh", "#!/bin/sh\necho \"app says $GREETING\"\nexec \"$@\"\n", 0o755)
    return bottom, top


def make(base: Path, name: str = "isobench-test-image", **config: object) -> Image:
    """A two-layer image under ``base`` (made once; reused when it is there)."""
    if not (base / "layer1").exists():
        _layers(base)
    layers = (base / "layer0", base / "layer1")
    cfg = ImageConfig(**{"entrypoint": (), "cmd": SERVE, "env": {"PATH": "/bin", "GREETING": "hello"},
                         "workdir": "/", **config})  # type: ignore[arg-type]
    digest = "sha256:" + hashlib.sha256(f"{name}{sorted(config.items())}".encode()).hexdigest()
    return Image(name=name, digest=digest, config_digest=digest, layers=layers,
                 diff_ids=tuple("sha256:" + hashlib.sha256(str(p).encode()).hexdigest() for p in layers),
                 config=cfg)
