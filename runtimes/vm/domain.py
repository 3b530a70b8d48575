"""A :class:`~runtimes.vm.machine.Machine` rendered to libvirt domain XML, and read back.

The domain is minimal on purpose: direct kernel boot, one serial console,
nothing else (no network, USB, graphics or balloon; an image's guest adds its
layers as read-only disks or one virtio-fs share; the throughput measurement a
virtio NIC on its own tap and a scratch disk), so that the VM's startup and
memory figures are those of the machine, not of its peripherals.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from runtimes.vm.machine import LayerDisk, Machine, Nic, ScratchDisk, SerialConsole, SharedDir

#: the namespace of our <metadata> element: how ``cleanup_leftovers`` recognises our domains
NS = "urn:isobench:domain:1"
NS_PREFIX = "isobench"
ET.register_namespace(NS_PREFIX, NS)


def _sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = str(text)
    return el


def render(m: Machine) -> str:
    """libvirt domain XML for ``m``; for ``conn.createXML`` (a transient domain)."""
    dom = ET.Element("domain", type="kvm" if m.accel == "kvm" else "qemu")
    _sub(dom, "name", m.name)
    meta = _sub(dom, "metadata")
    ET.SubElement(meta, f"{{{NS}}}instance", dict(m.labels))
    _sub(dom, "memory", m.memory_mib, unit="MiB")
    _sub(dom, "vcpu", m.vcpus, placement="static", **({"cpuset": m.cpuset} if m.cpuset else {}))
    if m.cpu_quota_us is not None:
        # libvirt's <period>/<quota> apply to *each* vCPU thread (its own cgroup):
        # N vCPUs could use N x quota, and one busy vCPU could not use an idle
        # one's share.  <global_period>/<global_quota> set CFS bandwidth on the
        # domain's whole cgroup (vCPUs, emulator and I/O threads), as a
        # container's cpu.max does: the total is the requested number of CPUs.
        tune = _sub(dom, "cputune")
        _sub(tune, "global_period", m.cpu_period_us)
        _sub(tune, "global_quota", m.cpu_quota_us)
    if m.cpu_shares is not None:
        found = dom.find("cputune")
        _sub(found if found is not None else _sub(dom, "cputune"), "shares", m.cpu_shares)
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine=m.machine_type)
    _sub(os_el, "kernel", m.kernel)
    _sub(os_el, "initrd", m.initrd)
    _sub(os_el, "cmdline", m.cmdline)
    features = _sub(dom, "features")
    if m.acpi:
        _sub(features, "acpi")
    if m.accel == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    _sub(dom, "clock", offset="utc")
    # The guest powers itself off when the workload ended; a reset only follows
    # a panic (panic=-1): either way the domain ends and is gone (transient).
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(dom, event, "destroy")
    if m.shared_memory:  # virtio-fs: virtiofsd maps the guest's RAM
        backing = _sub(dom, "memoryBacking")
        _sub(backing, "source", type="memfd")
        _sub(backing, "access", mode="shared")
    devices = _sub(dom, "devices")
    disks = 0
    for dev in m.devices:
        if isinstance(dev, SerialConsole):
            serial = _sub(devices, "serial", type="pty")
            _sub(serial, "target", port=str(dev.port))
            console = _sub(devices, "console", type="pty")
            _sub(console, "target", type="serial", port=str(dev.port))
        elif isinstance(dev, LayerDisk):
            _layer_disk(devices, dev, disks)
            disks += 1
        elif isinstance(dev, SharedDir):
            _shared_dir(devices, dev)
        elif isinstance(dev, Nic):
            # managed='no': libvirt opens the host's tap by name and leaves it as it is
            nic = _sub(devices, "interface", type="ethernet")
            _sub(nic, "target", dev=dev.tap, managed="no")
            _sub(nic, "model", type="virtio")
        elif isinstance(dev, ScratchDisk):
            disk = _sub(devices, "disk", type="file", device="disk")
            _sub(disk, "driver", name="qemu", type="raw", cache="none", io="native")
            source = _sub(disk, "source", file=dev.path)
            _sub(source, "seclabel", model="dac", relabel="no")  # the harness made it readable
            _sub(disk, "target", dev=disk_name(disks), bus="virtio")
            _sub(disk, "serial", dev.serial)
            disks += 1
    # libvirt adds a USB controller and a balloon unless told not to
    _sub(devices, "controller", type="usb", model="none")
    _sub(devices, "memballoon", model="none")
    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode")


def disk_name(index: int) -> str:
    """vda … vdz, vdaa …: the name libvirt wants for the target (the guest goes by the serial)."""
    letters = ""
    index += 1
    while index:
        index, r = divmod(index - 1, 26)
        letters = chr(ord("a") + r) + letters
    return f"vd{letters}"


def _layer_disk(devices: ET.Element, dev: LayerDisk, index: int) -> None:
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type="raw")
    source = _sub(disk, "source", file=dev.path)
    # shared by every guest of the image at once: libvirt must not chown it to one of them
    _sub(source, "seclabel", model="dac", relabel="no")
    _sub(disk, "target", dev=disk_name(index), bus="virtio")
    _sub(disk, "readonly")
    _sub(disk, "serial", dev.serial)


def _shared_dir(devices: ET.Element, dev: SharedDir) -> None:
    """libvirt starts (and ends) the share's virtiofsd itself; ``dev.socket`` is QEMU's own."""
    fs = _sub(devices, "filesystem", type="mount", accessmode="passthrough")
    _sub(fs, "driver", type="virtiofs")
    _sub(fs, "binary", path=dev.binary, xattr="on")  # cache: virtiofsd's default (auto), as for qemu
    _sub(fs, "source", dir=dev.source)
    _sub(fs, "target", dir=dev.tag)


def labels(xml: str) -> dict[str, str] | None:
    """Our metadata labels (run_id, workload) from a domain's XML; None when it is not ours."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    el = root.find(f"metadata/{{{NS}}}instance")
    return dict(el.attrib) if el is not None else None
