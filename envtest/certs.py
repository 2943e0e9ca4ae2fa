"""The certificates a private control plane needs, made fresh for every start.

Three small authorities, as envtest uses: one signs the API server's serving
certificate, one signs client certificates (the `admin` user in
`system:masters`), and a key pair signs service-account tokens. ECDSA P-256
keeps generation to milliseconds. A control plane with a node also gets the
kubelet's serving certificate, the kubelet's identity (`system:node:<name>`,
for the Node authorizer) and the API server's client certificate for kubelets. `write_kubeconfig`
hands a pair of them to a client.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALIDITY = datetime.timedelta(days=7)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class _Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str) -> _Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
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
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        alt_names: list[x509.GeneralName] | None = None,
    ) -> tuple[bytes, bytes]:
        """Returns (certificate PEM, key PEM) of a leaf signed by this authority."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        return _pem_cert(builder.sign(self.key, hashes.SHA256())), _pem_key(key)


@dataclass(frozen=True)
class ControlPlaneCerts:
    """Paths of every certificate and key file, written under one directory."""

    cert_dir: Path  # kube-apiserver's --cert-dir: holds apiserver.crt/.key
    serving_ca: Path
    client_ca: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_pub: Path

    def file(self, name: str) -> Path:
        """A node certificate or key by file name (`kubelet.crt`, `node.key`, ...)."""
        return self.cert_dir / name


@dataclass(frozen=True)
class NodeIdentity:
    """The node whose certificates are made too: its name and the address the kubelet serves on."""

    name: str
    address: str


def _subject(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_control_plane_certs(
    directory: Path, *, addresses: Sequence[str] = ("127.0.0.1",), node: NodeIdentity | None = None
) -> ControlPlaneCerts:
    """`addresses`: where the API server listens, for its certificate; 10.0.0.1 is the Service VIP."""
    directory.mkdir(parents=True, exist_ok=True)
    serving = _Authority.create("envtest-serving-ca")
    clients = _Authority.create("envtest-client-ca")
    serving_cert, serving_key = serving.issue(
        _subject("kube-apiserver"),
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            *(x509.IPAddress(ipaddress.ip_address(address)) for address in addresses),
            x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
        ],
    )
    admin_cert, admin_key = clients.issue(
        _subject("admin", "system:masters"), x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    )
    account_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "apiserver.crt": serving_cert,
        "apiserver.key": serving_key,
        "serving-ca.crt": _pem_cert(serving.cert),
        "client-ca.crt": _pem_cert(clients.cert),
        "admin.crt": admin_cert,
        "admin.key": admin_key,
        "sa.key": _pem_key(account_key),
        "sa.pub": account_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    if node is not None:
        files["kubelet.crt"], files["kubelet.key"] = serving.issue(
            _subject(node.name),
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.DNSName(node.name), x509.IPAddress(ipaddress.ip_address(node.address))],
        )
        files["node.crt"], files["node.key"] = clients.issue(
            _subject(f"system:node:{node.name}", "system:nodes"), x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
        )
        files["apiserver-kubelet-client.crt"], files["apiserver-kubelet-client.key"] = clients.issue(
            _subject("kube-apiserver-kubelet-client", "system:masters"),
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
        )
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        path.chmod(0o600)
    return ControlPlaneCerts(
        cert_dir=directory,
        serving_ca=directory / "serving-ca.crt",
        client_ca=directory / "client-ca.crt",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_pub=directory / "sa.pub",
    )


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> None:
    """A kubeconfig for `server` with the certificates inlined, replaced atomically (mode 0600)."""

    def inline(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    cluster = {"server": server, "certificate-authority-data": inline(ca)}
    user = {"client-certificate-data": inline(cert), "client-key-data": inline(key)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "envtest", "cluster": cluster}],
        "users": [{"name": "envtest", "user": user}],
        "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": "envtest"}}],
        "current-context": "envtest",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".partial")
    staged.write_text(yaml.safe_dump(config))
    staged.chmod(0o600)
    os.replace(staged, path)
