"""The remote sink over HTTPS to a real VictoriaMetrics (``-tls``) with a certificate of its
own (``SelfSigned``: the certificate is its own CA, like a private CA's root).

Declared: the readings written and the certificates the test generates. Computed: what the
server holds after the write, and the error the forwarder names when it does not trust it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.request

import pytest
from dcpue.collector.remote import Forwarder
from dcpue.config import ConfigError
from dcpue.config.collector import RemoteSettings
from dcpue.core.store import Store

from tests.collector.conftest import make_site
from tests.collector.helpers import once, stream, vm_export
from tests.servers import VictoriaMetrics
from tests.service.conftest import SelfSigned


class HttpsVictoriaMetrics(VictoriaMetrics):
    """VictoriaMetrics serving HTTPS only, with ``tls``'s certificate for 127.0.0.1."""

    def __init__(self, workdir, tls: SelfSigned) -> None:
        super().__init__(workdir)
        self.tls = tls
        self._ctx = ssl.create_default_context(cafile=str(tls.cert))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [*super().command(), "-tls", f"-tlsCertFile={self.tls.cert}",
                f"-tlsKeyFile={self.tls.key}"]

    def ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/health", timeout=1, context=self._ctx) as resp:
            return resp.status == 200

    def flush(self) -> None:
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10,
                                    context=self._ctx):
            pass


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """The server's certificate and another one that did not sign it."""
    base = tmp_path_factory.mktemp("remote-tls")
    return SelfSigned(base / "server"), SelfSigned(base / "other")


@pytest.fixture
def https_victoria(tmp_path, certificates):
    with HttpsVictoriaMetrics(tmp_path / "vm-https", certificates[0]) as vm:
        yield vm


def forwarder(store: Store, url: str, **settings) -> Forwarder:
    return Forwarder(store, make_site(), RemoteSettings(url=url, timeout_s=5.0, **settings))


async def test_verified_with_the_right_ca_file(https_victoria, certificates, monkeypatch):
    readings = stream(0, 30)
    store = Store()
    store.append(readings)
    f = forwarder(store, https_victoria.url, ca_file=str(certificates[0].cert))
    await f.drain()
    f.close()
    assert f.backlog() == 0 and f.stats.written == len(readings)
    await asyncio.to_thread(https_victoria.flush)
    # vm_export reads with urllib.request.urlopen: trust the server's certificate there too.
    https_opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=https_victoria._ctx))
    monkeypatch.setattr(urllib.request, "urlopen", https_opener.open)
    assert vm_export(https_victoria.url) == once(readings)


@pytest.mark.parametrize("ca", ["other", "system"])
async def test_refused_without_the_right_ca_naming_the_cause(https_victoria, certificates, ca):
    """A CA that did not sign the server's certificate, or none (system store only): the
    write is refused, the cursor stays, and the error says what is wrong and what to set."""
    store = Store()
    store.append(stream(0, 5))
    ca_file = str(certificates[1].cert) if ca == "other" else None
    f = forwarder(store, https_victoria.url, ca_file=ca_file)
    errors: list[Exception] = []
    await f.drain(errors.append)
    f.close()
    assert len(errors) == 1 and f.backlog() == 20
    assert "certificate verify failed" in f.stats.last_error
    assert "collector.remote.ca_file" in f.stats.last_error


async def test_tls_verify_false_is_explicit_and_logged(https_victoria, caplog):
    store = Store()
    store.append(stream(0, 5))
    with caplog.at_level(logging.WARNING, logger="dcpue.collector.remote"):
        f = forwarder(store, https_victoria.url, tls_verify=False)
    with pytest.warns(Warning):  # urllib3's InsecureRequestWarning, once per request site
        await f.drain()
    f.close()
    assert f.backlog() == 0
    assert "TLS certificate verification is OFF" in caplog.text


def test_an_unreadable_ca_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"collector\.remote\.ca_file .*missing\.pem"):
        forwarder(Store(), "https://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem"))
