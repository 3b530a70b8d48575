"""Sessions: tests, bench, validate, microbench, lint.

Every session that touches the host first runs ``isobench doctor --fix`` with
the system Python (standard library only), which installs the Debian packages
and starts virtlogd/libvirtd, because libvirt-python builds against libvirt-dev.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.default_venv_backend = "venv"


def _prepare_host(session: nox.Session) -> None:
    session.run("python3", "-m", "harness", "doctor", "--fix", "--no-probe", external=True)


def _install(session: nox.Session, extras: str = "") -> None:
    session.install("-q", "--upgrade", "pip")
    session.install("-q", "-e", f".{extras}")


def _delegated(session: nox.Session, *argv: str, **kw: object) -> None:
    """Run ``argv`` (a command of the session's venv) where it may create cgroups.

    On a cgroup v2 host with systemd, a login shell's cgroup holds other processes, so
    nothing can be delegated below it: run the command alone in a transient scope with
    ``Delegate=yes`` (isobench then moves itself into a leaf and creates its cgroups
    beside it, inside the scope).  Elsewhere (cgroup v1, no systemd) run it as is.
    """
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    if v2 and os.path.isdir("/run/systemd/system") and shutil.which("systemd-run"):
        exe = os.path.join(session.bin, argv[0])
        session.run("systemd-run", "--scope", "--quiet", "-p", "Delegate=yes", "--", exe, *argv[1:],
                    external=True, **kw)
    else:
        session.run(*argv, **kw)


def _run_id(tag: str) -> str:
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{tag}-{secrets.token_hex(2)}"


#: the tests that need the host (root, guests, libvirt): ``tests/conftest.py`` gates them by marker
HOST_MARKERS = ("privileged", "vm", "libvirt")


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: unit tests plus real namespaces, cgroups, libvirtd and guests."""
    _prepare_host(session)
    _install(session, "[test,fleet]")
    _delegated(session, "pytest", "--durations=20", *(session.posargs or ["tests"]))


@nox.session
def unit(session: nox.Session) -> None:
    """The tests that need no root and touch nothing on the host (seconds; any machine)."""
    _install(session, "[test,fleet]")
    not_host = " and ".join(f"not {m}" for m in HOST_MARKERS)
    session.run("pytest", "-m", f"{not_host} and not v2host", "--durations=10", *(session.posargs or ["tests"]))


@nox.session
def bench(session: nox.Session) -> None:
    """The main job: run scenarios/default.toml on every backend, then build the report."""
    _prepare_host(session)
    _install(session)
    session.run("isobench", "doctor")
    scenario = session.posargs[0] if session.posargs else "scenarios/default.toml"
    run_id = _run_id("bench")
    _delegated(session, "isobench", "run", scenario, "--run-id", run_id)
    # the floor: each kernel primitive of a launch, timed on the same host right after the run
    session.install("-q", "pytest")
    _delegated(session, "pytest", "-q", "benchmarks", "--benchmark-only", "-p", "no:cacheprovider",
               f"--benchmark-json=results/{run_id}/floor.json")
    session.run("isobench", "report", f"results/{run_id}")
    session.run("isobench", "report", f"results/{run_id}", "--card")  # card.png beside the report, for a slide
    # the harness's CPU figures beside an independent measurement (tools/crosscheck-cpu.sh: a
    # hand-made cgroup, stress-ng, the kernel's counters), same host, same session; shown, not gating
    _delegated(session, "python", "tools/crosscheck_cpu.py", f"results/{run_id}", success_codes=[0, 1, 2])
    # the throughput tools run by hand (tools/crosscheck-throughput.sh) beside the run's bare figures
    _delegated(session, "python", "tools/crosscheck_throughput.py", f"results/{run_id}", "--repeat", "1",
               success_codes=[0, 1, 2])


@nox.session
def validate(session: nox.Session) -> None:
    """cgroup-enforcement regression gate: run the enforcement scenario, check it against the baseline."""
    _prepare_host(session)
    _install(session)
    run_id = _run_id("validate")
    _delegated(session, "isobench", "run", "scenarios/validate.toml", "--run-id", run_id)
    args = ["--baseline", "baselines/enforcement.toml", "--junit", f"reports/validate-{run_id}.xml"]
    if "--update-baseline" in session.posargs:
        args.append("--update-baseline")
    session.run("isobench", "validate", f"results/{run_id}", *args)
    # proof that this run could have failed: mutated copies of it must each fail the gate (shown;
    # on a host too busy for the quota to bind, the CPU mutations are reported as not caught)
    session.run("isobench", "validate", "--self-test", f"results/{run_id}", success_codes=[0, 1])


@nox.session
def microbench(session: nox.Session) -> None:
    """The floor: pytest-benchmark microbenchmarks of each kernel primitive a launch is made of."""
    _prepare_host(session)
    _install(session, "[test]")
    os.makedirs(".benchmarks", exist_ok=True)
    _delegated(session, "pytest", "benchmarks", "--benchmark-only", "--benchmark-autosave", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything; mypy over harness/ and runtimes/ (configured in pyproject.toml)."""
    _install(session, "[lint]")
    session.run("ruff", "check", "harness", "runtimes", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


@nox.session
def matrix(session: nox.Session) -> None:
    """Kernel × cgroup version: scenarios/validate.toml inside virtme-ng guests (6.1 and 6.12, v1 and v2),
    then the merged report.  ``nox -s matrix -- SCENARIO --kernels … --cgroups …`` overrides."""
    _prepare_host(session)
    _install(session)
    args = session.posargs or ["scenarios/validate.toml", "--kernels", "6.1,6.12", "--cgroups", "v1,v2"]
    session.run("isobench", "matrix", *args, "--report")


@nox.session
def images(session: nox.Session) -> None:
    """The example images (python3 + an HTTP app, redis-server, the workload tree), made with umoci from
    this host's Debian packages, reproducibly, and imported into the image store
    (``nox -s images -- isobench/redis`` builds one)."""
    _prepare_host(session)
    _install(session)
    session.run("python", "-m", "runtimes.image.examples", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """The soak (scenarios/soak.toml: 10,000 container launches, 1,000 on oci:crun, 100 guests in one run)
    with the harness's, its zygote's and the kernel's resources read between launches; start, end and slope
    per 1,000 launches of each (docs/reliability.md).  ``nox -s soak -- --scale 0.2`` runs a fifth."""
    _prepare_host(session)
    _install(session)
    _delegated(session, "isobench", "soak", "--run-id", _run_id("soak"), *session.posargs)


@nox.session
def fleet(session: nox.Session) -> None:
    """A fleet without a lab: this machine plus two virtme-ng guests (Debian 6.1 and 6.12 kernels)
    reached over SSH on 127.0.0.1 only, scenarios/fleet.toml on each through Ansible, then one merged
    report (``nox -s fleet -- --kernels 6.1,6.12:v1`` picks other guests)."""
    _prepare_host(session)
    _install(session, "[fleet]")
    inventory = os.path.join(session.create_tmp(), "lab.yml")  # the lab removes it when it powers off
    lab = session.posargs or ["--kernels", "6.1,6.12"]
    # no delegated scope here: each host's run step gets its own (harness/fleet/playbooks/run.sh)
    session.run("isobench", "fleet", "lab", "--local", *lab, "--inventory", inventory, "--",
               os.path.join(session.bin, "isobench"), "fleet", "run", inventory, "scenarios/fleet.toml", "--report")
