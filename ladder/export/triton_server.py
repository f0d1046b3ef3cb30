"""Start and stop a real ``tritonserver`` (``scripts/install_triton.sh``) on loopback, for tests and benches.

Usage: ``python -m ladder.export.triton_server REPOSITORY [--grpc-port N] [--http-port N]`` (foreground).
The server dir and virtual environment are found at ``$LADDER_TRITON_VENV`` or ``<repo>/.venv-triton``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ladder.core.errors import LadderError, exit_code
from ladder.core.loopback import Started, free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]  # the checkout: ladder/export/ is two folders down


class TritonNotInstalled(LadderError):
    """No tritonserver binary: run ``scripts/install_triton.sh``."""


class TritonStartError(LadderError):
    """tritonserver exited or did not become ready in time (its log is quoted)."""


def triton_venv() -> Path:
    """The virtual environment holding pytriton, numpy<2, onnxruntime and tokenizers."""
    env = os.environ.get("LADDER_TRITON_VENV", "").strip()
    return Path(env) if env else ROOT / ".venv-triton"


def find_tritonserver(venv: Path | None = None) -> Path:
    """``<venv>/tritonserver/bin/tritonserver``, or raise ``TritonNotInstalled``."""
    binary = (venv or triton_venv()) / "tritonserver" / "bin" / "tritonserver"
    if not os.access(binary, os.X_OK):
        raise TritonNotInstalled(f"no tritonserver at {binary}: run scripts/install_triton.sh")
    return binary




def _server_env(venv: Path) -> dict[str, str]:
    """PATH with the venv's bin first (the python stub imports numpy through it), and the server's libs."""
    python = venv / "bin" / "python"
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig as s; print(s.get_paths()['purelib']); print(s.get_config_var('LIBDIR'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    site, libdir = out.stdout.split()
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = f"{libdir}:{site}/nvidia_pytriton.libs:{env.get('LD_LIBRARY_PATH', '')}"
    env.pop("PYTHONPATH", None)
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    return env


class TritonServer(Started):
    """One tritonserver process serving ``repository`` on 127.0.0.1."""

    def __init__(
        self,
        repository: Path,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        log_path: Path | None = None,
        trace_config: Sequence[str] = (),
        venv: Path | None = None,
        binary: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``binary``: a full tritonserver (e.g. ``/opt/tritonserver/bin/tritonserver``, with its own
        backends and environment) instead of pytriton's in the virtual environment; ``extra_args`` go last
        on its command line (e.g. ``--model-control-mode=explicit``)."""
        self.repository = Path(repository).resolve()
        self.venv = venv or triton_venv()
        self.system_binary = binary is not None
        self.binary = binary if binary is not None else find_tritonserver(self.venv)
        self.extra_args = list(extra_args)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.log_path = log_path or self.repository.parent / f"tritonserver-{self.grpc_port}.log"
        self.trace_config = list(trace_config)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        server_dir = self.binary.parent.parent
        args = [
            str(self.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={server_dir / 'backends'}",
            f"--grpc-port={self.grpc_port}",
            f"--http-port={self.http_port}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            "--allow-metrics=false",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
        if self.trace_config:
            args.append("--trace-config=mode=opentelemetry")
            args += [f"--trace-config={item}" for item in self.trace_config]
        return args + self.extra_args

    def start(self, timeout: float = 60.0) -> TritonServer:
        """Spawn the server and wait until ``/v2/health/ready`` answers 200."""
        if self.process is not None and self.process.poll() is None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ) if self.system_binary else _server_env(self.venv),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonStartError(
                    f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TritonStartError(f"tritonserver not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def ready(self) -> bool:
        """Whether the server answers ready (every model loaded)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server's process group (it stops its python stubs), SIGKILL after ``timeout``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        stop_process(process, timeout, group=True)

    def kill(self) -> None:
        """SIGKILL the server and its python stubs at once (a crash, for tests)."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ladder.export.triton_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("repository", type=Path)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--http-port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = TritonServer(
        args.repository, grpc_port=args.grpc_port, http_port=args.http_port, log_path=Path("/dev/stderr")
    )

    def serve() -> None:
        try:
            server.start()
            print(
                f"tritonserver ready: gRPC {server.grpc_url}, HTTP {server.http_url} (Ctrl-C stops it)",
                flush=True,
            )
            while server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()

    return exit_code(serve)


if __name__ == "__main__":
    sys.exit(main())
