"""Real ``meddift serve`` processes for the server tests: a free loopback port, a throwaway CA and
certificate (made here with ``cryptography``), tokens, and bounded waits. Nothing binds anything
but 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ENGINE = {"backbone": "mind-ssc"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tls(folder: Path) -> dict:
    """A CA, and a server certificate for 127.0.0.1 signed by it (PEM files); valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MedDIFT test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return {k: str(v) for k, v in paths.items()}


def make_tokens(folder: Path, n: int = 2) -> tuple[str, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    tokens = [secrets.token_urlsafe(24) for _ in range(n)]
    path = folder / "tokens.txt"
    path.write_text("# MedDIFT server tokens\n" + "\n".join(tokens) + "\n")
    return str(path), tokens


def serve_command(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "MedDIFTLib.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]


def server_env(folder: Path) -> dict:
    """No MAISI weights (the weight-free backbone), one thread (the test machine is shared)."""
    return dict(
        os.environ,
        MEDDIFT_WEIGHTS_DIR=str(folder / "no_weights"),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )


class ServerProcess:
    """``meddift serve`` in a subprocess; its log in a file (read by the tests that check for tokens)."""

    def __init__(self, folder: Path, *args: str, tls: dict | None = None, cache_dir: Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.tls = tls
        self.cache_dir = Path(cache_dir or self.folder / "cache")
        extra = ["--tls-cert", tls["cert"], "--tls-key", tls["key"]] if tls else []
        self.log_path = self.folder / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            serve_command(self.port, "--cache-dir", str(self.cache_dir), *extra, *args),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=server_env(self.folder),
            cwd=str(REPO),
            start_new_session=True,
        )
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the port answers HTTP (any status), at most ``timeout`` s."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/v1/info", verify=self._verify(), timeout=2.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.log()}")

    def _verify(self):
        import ssl

        return ssl.create_default_context(cafile=self.tls["ca"]) if self.tls else True

    def http(self, token: str | None = None, protocol: str | None = "1"):
        """A raw HTTP client (for requests the RemoteClient would never send)."""
        import httpx

        headers = {}
        if protocol is not None:
            headers["X-MedDIFT-Protocol"] = protocol
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.url, headers=headers, verify=self._verify(), timeout=30.0)

    def client(self, token: str | None = None, **kw):
        from MedDIFTLib.service.remote_client import RemoteClient

        c = RemoteClient(self.url, token=token, ca_file=self.tls["ca"] if self.tls else None, **kw)
        c.start(timeout=30)
        return c

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()

    def terminate(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.proc.returncode


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    """``predicate()`` once truthy, within ``timeout`` s (a bounded loop), else AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def phantom_files(folder: Path, size: int, seed: int, n_landmarks: int) -> dict:
    """A phantom pair (``fixed.nrrd``, ``moving.nrrd``), its landmarks (``points.csv``), two tokens and a
    throwaway TLS certificate in ``folder``: what every server test starts from."""
    from MedDIFTLib.data.image_io import write_volume
    from MedDIFTLib.data.landmark_io import write_points
    from MedDIFTLib.evaluation.phantom import make_pair, sample_landmarks

    pair = make_pair(shape=(size,) * 3, spacing=(5.0, 5.0, 5.0), seed=seed)
    write_volume(pair.fixed, folder / "fixed.nrrd")
    write_volume(pair.moving, folder / "moving.nrrd")
    lm = sample_landmarks(pair, n=n_landmarks, seed=seed)
    write_points(lm, folder / "points.csv")
    token_file, tokens = make_tokens(folder, 2)
    return {
        "folder": folder,
        "pair": pair,
        "lm": lm,
        "token_file": token_file,
        "tokens": tokens,
        "tls": make_tls(folder / "tls"),
    }
