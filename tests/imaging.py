"""Container tooling for the image tests: a local base image made with debootstrap, a build
stage image with this machine's CA certificates (test-only), a registry on 127.0.0.1, and
container storage of their own; every daemon stopped by its PID and everything removed.

No image can be pulled from a public registry here, so the base comes from Debian's packages:
``debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm`` from the
machine's Debian mirror (``/etc/apt/sources.list.d/debian.sources``). The build stage image
adds the machine's CA certificates (``/usr/local/share/ca-certificates/*.crt``) and its pip
index settings, so pip inside ``RUN`` reaches the package registry; the serving image's final
stage is built FROM the plain base, so neither reaches a shipped image (the test checks).

When a tool is missing the tests skip, unless ``CI`` is set: then they fail (``.ci/run``
installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from conftest import free_port

TOOLS = ("buildah", "podman", "runc", "skopeo", "docker-registry", "debootstrap")
"""What the image tests need on PATH; `.ci/run` installs them with apt-get."""

APT_PACKAGES = "docker-registry buildah runc podman skopeo debootstrap"
BASE_IMAGE = "localhost/dripml-test-base:bookworm"
BUILD_IMAGE = "localhost/dripml-test-build:bookworm"
SUITE = "bookworm"
CA_FOLDER = Path("/usr/local/share/ca-certificates")
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_tools() -> None:
    """Skip (or, with ``CI`` set, fail) when a container tool is missing or we are not root."""
    missing = missing_tools()
    reason = None
    if missing:
        reason = (f"container tools missing: {', '.join(missing)} (apt-get install -y "
                  f"--no-install-recommends {APT_PACKAGES}; .ci/run does)")
    elif os.geteuid() != 0:
        reason = "the image tests need root (debootstrap, buildah and podman storage)"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
        pytest.skip(reason)


def debian_mirror(sources: Path = DEBIAN_SOURCES) -> str:
    """The first ``URIs:`` of the machine's deb822 Debian sources (the main archive)."""
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split(":", 1)[1].split()[0]
    return DEFAULT_MIRROR


def pip_index_env() -> dict[str, str]:
    """The machine's pip index settings that a container can use (http(s) only; local
    ``file://`` folders are not in the container)."""
    env: dict[str, str] = {}
    completed = subprocess.run(["pip", "config", "list"], capture_output=True, text=True,
                               check=False)
    settings = dict(os.environ)
    for line in completed.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url"):
            settings.setdefault("PIP_" + name.upper().replace("-", "_"), value.strip("'\""))
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        urls = [u for u in settings.get(name, "").split() if u.startswith(("http://", "https://"))]
        if urls:
            env[name] = " ".join(urls)
    return env


@dataclass
class ImageEnv:
    """What the image fixture made. ``timings`` are seconds."""

    base_image: str
    build_image: str
    registry: str
    root: Path
    ca_files: list[Path]
    timings: dict[str, float] = field(default_factory=dict)


def run(argv: list[str], timeout: float = 600, **kwargs: object) -> str:
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                               check=False, stdin=subprocess.DEVNULL, **kwargs)  # type: ignore
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {completed.returncode}:\n"
                             f"{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}")
    return completed.stdout


def storage_conf(root: Path) -> Path:
    """A containers-storage configuration with its own overlay store under ``root``."""
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root / "graph"}"\n'
                    f'runroot = "{root / "run"}"\n')
    return conf


def build_base(root: Path, mirror: str) -> None:
    """debootstrap a minimal bookworm with Python 3.11 and commit it as BASE_IMAGE."""
    rootfs = root / "rootfs"
    run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip",
         SUITE, str(rootfs), mirror], timeout=900)
    run(["chroot", str(rootfs), "apt-get", "clean"])
    for folder in (rootfs / "var/lib/apt/lists", rootfs / "var/cache/apt"):
        shutil.rmtree(folder, ignore_errors=True)
    tarball = root / "rootfs.tar"
    run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."])
    shutil.rmtree(rootfs)
    container = run(["buildah", "from", "scratch"]).strip()
    try:
        run(["buildah", "add", container, str(tarball), "/"])
        run(["buildah", "config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", container])
        run(["buildah", "commit", "--quiet", container, BASE_IMAGE])
    finally:
        run(["buildah", "rm", container])
        tarball.unlink()


def build_stage_image(root: Path, ca_files: list[Path]) -> None:
    """BASE_IMAGE plus this machine's CA certificates and pip index settings: the image of
    the serving image's build stage only."""
    context = root / "build-stage"
    context.mkdir()
    for path in ca_files:
        shutil.copy2(path, context / path.name)
    env = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt", **pip_index_env()}
    lines = [f"FROM {BASE_IMAGE}"]
    if ca_files:
        lines += ["COPY *.crt /usr/local/share/ca-certificates/", "RUN update-ca-certificates"]
    lines += [f'ENV {key}="{value}"' for key, value in env.items()]
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    run(["buildah", "bud", "--isolation", "chroot", "--quiet", "-t", BUILD_IMAGE,
         str(context)])
    shutil.rmtree(context)


@dataclass
class Registry:
    """A docker-registry (Distribution) on 127.0.0.1, filesystem storage."""

    root: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> None:
        config = self.root / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n")
        log = (self.root / "registry.log").open("wb")
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"http://{self.host}/v2/", timeout=1, trust_env=False
                             ).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("docker-registry did not start:\n"
                                     + (self.root / "registry.log").read_text()[-2000:])
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def remove_storage(root: Path) -> None:
    """Remove every container, image and layer of the fixture's own store, then the folder."""
    for argv in (["podman", "rm", "--all", "--force"], ["buildah", "rm", "--all"],
                 ["podman", "rmi", "--all", "--force"], ["buildah", "rmi", "--all", "--force"]):
        subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL)
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(root))]
    for mount in sorted(mounts, reverse=True):
        subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def image_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageEnv]:
    """Base and build-stage images in a container store of their own, and a registry on
    127.0.0.1; all removed (the registry stopped by its PID) at the end of the session."""
    require_tools()
    root = tmp_path_factory.mktemp("imaging")
    store = root / "storage"
    store.mkdir()
    patch = pytest.MonkeyPatch()
    patch.setenv("CONTAINERS_STORAGE_CONF", str(storage_conf(store)))
    patch.setenv("BUILDAH_ISOLATION", "chroot")
    registry = Registry(root / "registry")
    registry.root.mkdir()
    ca_files = sorted(CA_FOLDER.glob("*.crt"))
    timings: dict[str, float] = {}
    try:
        started = time.perf_counter()
        build_base(root, debian_mirror())
        timings["base_image_s"] = time.perf_counter() - started
        started = time.perf_counter()
        build_stage_image(root, ca_files)
        timings["build_stage_image_s"] = time.perf_counter() - started
        registry.start()
        yield ImageEnv(base_image=BASE_IMAGE, build_image=BUILD_IMAGE, registry=registry.host,
                       root=root, ca_files=ca_files, timings=timings)
    finally:
        registry.stop()
        remove_storage(store)
        patch.undo()
        shutil.rmtree(root, ignore_errors=True)
