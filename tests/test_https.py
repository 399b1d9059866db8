"""HTTPS: the gateway serves TLS with the configured certificate and key (the official SDK, told
to trust only the test's own CA, talks to it), sends HSTS only over HTTPS, and refuses to start
with one clear line and exit code 2 when the certificate or key is missing or wrong."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import openai
import pytest
from conftest import GatewayServer, write_config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path) -> dict[str, Path]:
    """A test CA, a server certificate for 127.0.0.1/localhost signed by it, the server's key,
    an unrelated key (for the mismatch case) and the server key encrypted with a passphrase."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("aigateway test CA")).issuer_name(_name("aigateway test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key",
             "other_key": folder / "other.key", "encrypted_key": folder / "encrypted.key",
             "garbage": folder / "garbage.pem"}
    files["garbage"].write_text("this is not a certificate\n")
    files["ca"].write_bytes(ca.public_bytes(pem))
    files["cert"].write_bytes(cert.public_bytes(pem))

    def private(k: ec.EllipticCurvePrivateKey, encryption=serialization.NoEncryption()) -> bytes:  # noqa: B008
        return k.private_bytes(pem, serialization.PrivateFormat.PKCS8, encryption)

    files["key"].write_bytes(private(key))
    files["other_key"].write_bytes(private(ec.generate_private_key(ec.SECP256R1())))
    files["encrypted_key"].write_bytes(private(key, serialization.BestAvailableEncryption(b"passphrase")))
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def trusting(pki: dict[str, Path]) -> ssl.SSLContext:
    """A client context that trusts the test CA and nothing else."""
    return ssl.create_default_context(cafile=str(pki["ca"]))


@pytest.fixture(scope="module")
def https_gateway(fake_upstream: str, tmp_path_factory: pytest.TempPathFactory, pki) -> GatewayServer:
    server = GatewayServer(tmp_path_factory.mktemp("https"), fake_upstream, **{
        "server.https.enabled": True, "server.https.cert_file": str(pki["cert"]),
        "server.https.key_file": str(pki["key"])})
    yield server
    server.stop()


def add_client(server: GatewayServer, name: str, verify: ssl.SSLContext) -> str:
    from aigateway import clients

    conn = server.db()
    _, key = clients.create(conn, name, "fake-openai")
    conn.close()
    deadline = time.monotonic() + 5
    while httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                    verify=verify).status_code == 401:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return key


def test_the_openai_sdk_talks_to_the_gateway_over_verified_tls(https_gateway, pki):
    assert https_gateway.url.startswith("https://127.0.0.1:")
    key = add_client(https_gateway, "tls-client", trusting(pki))
    with httpx.Client(verify=trusting(pki)) as http:
        client = openai.OpenAI(base_url=https_gateway.url + "/v1", api_key=key, http_client=http, max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "over TLS"}])
        assert reply.choices[0].message.content == "Echo: over TLS"
        stream = client.chat.completions.create(model="gpt-4o", stream=True,
                                                messages=[{"role": "user", "content": "streamed over TLS"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: streamed over TLS"


def test_hsts_only_over_https(https_gateway, gateway, pki):
    secure = httpx.get(https_gateway.url + "/health", verify=trusting(pki))
    assert secure.headers["strict-transport-security"] == "max-age=31536000"
    missing = httpx.get(https_gateway.url + "/no/such/path", verify=trusting(pki))
    assert missing.status_code == 404 and "strict-transport-security" in missing.headers
    plain = httpx.get(gateway.url + "/health")
    assert "strict-transport-security" not in plain.headers


def test_an_untrusted_client_and_plain_http_get_nothing(https_gateway, pki):
    with pytest.raises(httpx.ConnectError):  # the default trust store does not know the test CA
        httpx.get(https_gateway.url + "/health")
    host, port = https_gateway.url.removeprefix("https://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = sock.recv(4096)
        except ConnectionResetError:
            reply = b""
    assert b"200 OK" not in reply and b'"status"' not in reply
    assert httpx.get(https_gateway.url + "/health", verify=trusting(pki)).status_code == 200  # still serving


def start_with(tmp_path: Path, fake_upstream: str, **https) -> subprocess.CompletedProcess:
    config = write_config(tmp_path, fake_upstream, **{"server.https.enabled": True,
                                                      **{f"server.https.{k}": v for k, v in https.items()}})
    return subprocess.run([sys.executable, "-m", "aigateway", "run", "--config", str(config), "--port", "0"],
                          capture_output=True, text=True, timeout=20)


BAD_SETUPS = {
    "no cert_file": ({"key_file": "KEY"}, "server.https.cert_file: HTTPS is enabled but no cert_file is set"),
    "missing cert": ({"cert_file": "/nonexistent/cert.pem", "key_file": "KEY"}, "no such file: /nonexistent/cert.pem"),
    "missing key": ({"cert_file": "CERT", "key_file": "missing.key"}, "server.https.key_file: no such file"),
    "mismatched key": ({"cert_file": "CERT", "key_file": "OTHER"}, "does not match the certificate"),
    "not PEM": ({"cert_file": "GARBAGE", "key_file": "KEY"}, "cannot load the certificate and key"),
    "encrypted key": ({"cert_file": "CERT", "key_file": "ENCRYPTED"}, "the key is encrypted"),
}


@pytest.mark.parametrize("case", list(BAD_SETUPS))
def test_a_bad_certificate_setup_is_one_line_and_exit_2(tmp_path, fake_upstream, pki, case):
    names = {"KEY": pki["key"], "CERT": pki["cert"], "OTHER": pki["other_key"], "ENCRYPTED": pki["encrypted_key"],
             "GARBAGE": pki["garbage"]}
    https, expected = BAD_SETUPS[case]
    https = {k: str(names.get(v, v)) for k, v in https.items()}
    out = start_with(tmp_path, fake_upstream, **https)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert expected in out.stderr, out.stderr
    assert "listening" not in out.stdout
